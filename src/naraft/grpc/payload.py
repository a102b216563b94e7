"""Nacos 2.x's wire unit, `Payload{metadata{type, clientIp, headers}, body: Any}`, and
the JSON bodies inside it.

The message types are built at import from a descriptor written here (the same field
numbers as Nacos's `nacos_grpc_service.proto`: Metadata.type=3, headers=7, clientIp=8;
Payload.metadata=2, body=3), so no generated code and no protoc are needed. A body is
a `google.protobuf.Any` whose `value` holds the request or response as UTF-8 JSON and whose
`type_url` is left empty, as every 2.x client sends it. gRPC method paths have no package:
`/Request/request`, `/BiRequestStream/requestBiStream`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from naraft.errors import InvalidArgumentError

REQUEST_SERVICE: Final = "Request"
REQUEST_METHOD: Final = "request"
STREAM_SERVICE: Final = "BiRequestStream"
STREAM_METHOD: Final = "requestBiStream"

MAX_TYPE_CHARS: Final = 128
MAX_HEADERS: Final = 64
MAX_HEADER_CHARS: Final = 4096


def _file() -> descriptor_pb2.FileDescriptorProto:
    F = descriptor_pb2.FieldDescriptorProto  # noqa: N806 (the protobuf class, short)
    proto = descriptor_pb2.FileDescriptorProto(
        name="naraft_nacos_payload.proto",
        syntax="proto3",
        dependency=["google/protobuf/any.proto"],
    )
    metadata = proto.message_type.add(name="Metadata")
    metadata.field.add(name="type", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    metadata.field.add(name="clientIp", number=8, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    metadata.field.add(
        name="headers",
        number=7,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".Metadata.HeadersEntry",
    )
    entry = metadata.nested_type.add(name="HeadersEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    payload = proto.message_type.add(name="Payload")
    payload.field.add(
        name="metadata",
        number=2,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_OPTIONAL,
        type_name=".Metadata",
    )
    payload.field.add(
        name="body",
        number=3,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_OPTIONAL,
        type_name=".google.protobuf.Any",
    )
    return proto


def _payload_class() -> type[Message]:
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)
    pool.Add(_file())
    payload: type[Message] = message_factory.GetMessageClass(pool.FindMessageTypeByName("Payload"))
    return payload


Payload = _payload_class()


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded payload: its type name, metadata headers, the client IP it claims,
    and its JSON body (a dict)."""

    type: str
    headers: Mapping[str, str]
    client_ip: str
    body: dict[str, Any]


def parse(raw: bytes) -> Decoded:
    """Decode a serialized Payload; raises InvalidArgumentError naming what is wrong."""
    try:
        payload: Any = Payload.FromString(raw)
    except DecodeError:
        raise InvalidArgumentError("payload", "is not a Nacos Payload message") from None
    return decoded(payload)


def decoded(payload: Any) -> Decoded:
    """The parts of a Payload message, bounded; raises InvalidArgumentError."""
    metadata = payload.metadata
    kind = metadata.type
    if not kind:
        raise InvalidArgumentError("metadata.type", "is required")
    if len(kind) > MAX_TYPE_CHARS:
        raise InvalidArgumentError("metadata.type", f"is longer than {MAX_TYPE_CHARS} characters")
    headers = dict(metadata.headers)
    if len(headers) > MAX_HEADERS:
        raise InvalidArgumentError("metadata.headers", f"has more than {MAX_HEADERS} entries")
    for key, value in headers.items():
        if len(key) + len(value) > MAX_HEADER_CHARS:
            raise InvalidArgumentError(
                "metadata.headers", f"entry {key[:64]!r} is longer than {MAX_HEADER_CHARS}"
            )
    raw_body = payload.body.value
    if not raw_body:
        body: Any = {}
    else:
        try:
            body = orjson.loads(raw_body)
        except orjson.JSONDecodeError:
            raise InvalidArgumentError("body", "is not UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgumentError("body", "must be a JSON object")
    return Decoded(kind, headers, metadata.clientIp[:MAX_TYPE_CHARS], body)


def build(kind: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Any:
    """A Payload message of type `kind` carrying `body` as JSON."""
    payload: Any = Payload()
    payload.metadata.type = kind
    if headers:
        payload.metadata.headers.update(headers)
    payload.body.value = orjson.dumps(body)
    return payload


def build_encoded(kind: str, body: bytes) -> Any:
    """A Payload message of type `kind` whose body is already JSON bytes."""
    payload: Any = Payload()
    payload.metadata.type = kind
    payload.body.value = body
    return payload


def serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data
