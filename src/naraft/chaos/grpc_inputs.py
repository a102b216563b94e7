"""The input nemesis's gRPC requests: what a broken or hostile 2.x client sends to a node's
gRPC port, and the answers each deserves (`naraft.chaos.inputs` draws and sends them).

Every case names the answers it accepts as labels: `<response type>:<errorCode>` for a
decoded answer (`InstanceResponse:400`, `ErrorResponse:502`), a gRPC status name for a
call the server refused at the transport (`RESOURCE_EXHAUSTED` over the message limit),
or what a stream did (`stream-closed`, `stream-open`, `closed-by-server`). An answer that
is not Nacos-shaped (no integer `resultCode`/`errorCode`, a refusal without a message) is
`not-nacos:<type>`, which no case accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import grpc
import orjson
from grpc import aio

from naraft.grpc import payload
from naraft.grpc.client import Answer, GrpcTestClient

SERVICE_PREFIX: Final = "nemesis-grpc-"
GRPC_TIMEOUT_SECONDS: Final = 10.0
SILENT_WAIT_SECONDS: Final = 15.0  # 3 unanswered pushes of 3 s, and some slack
STREAM_WAIT_SECONDS: Final = 1.0
MAX_MESSAGE_BYTES: Final = 10 * 1024 * 1024  # naraft's default gRPC inbound limit
NAMES: Final = {"namespace": "public", "groupName": "DEFAULT_GROUP"}

TRANSIENT: Final = frozenset(
    {
        "ErrorResponse:300",  # starting or stopping
        "ErrorResponse:500",  # a forwarded write broke mid-request under a fault
        "ErrorResponse:503",  # no leader
        "timeout",
        "node-down",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "connect-failed",
    }
)
"""Answers any gRPC case may get while faults run (the HTTP contract's 503 and timeouts)."""


class Mode(enum.Enum):
    UNARY = "unary"  # `data` on a connection that did its setup
    UNREGISTERED = "unregistered"  # `data` on a channel that never sent ConnectionSetup
    GARBAGE_STREAM = "garbage-stream"  # setup, then `stream` on the bi-stream
    SILENT = "silent"  # subscribe and register, never answer the pushes


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcSend:
    mode: Mode
    answers: frozenset[str]
    data: bytes = b""
    stream: tuple[bytes, ...] = ()
    service: str = ""  # SILENT: the service it follows and registers in


def _message(kind: str, body: Mapping[str, Any] | None = None, raw: bytes | None = None) -> bytes:
    """A serialized Payload; the body by the standard json (integers past 64 bits too)."""
    message = payload.build(kind, {})
    message.body.value = raw if raw is not None else json.dumps(dict(body or {})).encode()
    return payload.serialize(message)


def _instance_body(**instance: Any) -> dict[str, Any]:
    return {
        **NAMES,
        "serviceName": f"{SERVICE_PREFIX}0",
        "type": "registerInstance",
        "instance": {"ip": "10.202.0.1", "port": 80, "clusterName": "DEFAULT",
                     "weight": 1.0, "ephemeral": True, **instance},
    }  # fmt: skip


REFUSED_FIELD: Final = frozenset({"InstanceResponse:400"})
BAD_BODY: Final = frozenset({"ErrorResponse:502"})


def undecodable(rng: random.Random) -> tuple[str, GrpcSend]:
    """Bytes that are no Payload message (random, truncated, a wrong wire type)."""
    valid = _message("HealthCheckRequest")
    data = rng.choice(
        (
            rng.randbytes(rng.randrange(1, 4096)),
            valid[: len(valid) // 2],
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
            b"\x0a\xff\xff\xff\x0f",  # a length far past the end
            b"\x0f",  # a field number 1 with the reserved wire type 7
        )
    )
    # random bytes may happen to decode: then the type is empty or unknown
    answers = frozenset({"ErrorResponse:502", "ErrorResponse:302"})
    return f"{len(data)} undecodable bytes", GrpcSend(mode=Mode.UNARY, data=data, answers=answers)


def bad_body(rng: random.Random) -> tuple[str, GrpcSend]:
    """A well-formed Payload whose JSON body is not JSON or not an object."""
    raw = rng.choice(
        (
            b"{not json",
            b"[1, 2, 3]",
            b"42",
            b'"a string"',
            b"null",
            b"true",
            b"\xff\xfe\xfd",
            b'{"a": "\xed\xa0\x80"}',  # a lone surrogate: not UTF-8
            b"[" * 100_000,
            b'{"serviceName": "x"' + b" " * 1000,
        )
    )
    kind = rng.choice(("InstanceRequest", "HealthCheckRequest", "ServiceQueryRequest"))
    shown = raw[:16]
    send = GrpcSend(mode=Mode.UNARY, data=_message(kind, raw=raw), answers=BAD_BODY)
    return f"{kind} with body {shown!r} ({len(raw)} bytes)", send


def unknown_type(rng: random.Random) -> tuple[str, GrpcSend]:
    """A request type no handler serves (or only a member may send)."""
    kind = rng.choice(
        (
            "NoSuchRequest",
            "ReleaseConnectionRequest",
            "InstanceResponse",
            "ConnectionSetupRequest",
            "\u4e2d\u6587Request",
            "x" * 128,
        )
    )
    data = _message(kind, {"serviceName": "x"})
    answers = frozenset({"ErrorResponse:302"})
    if rng.random() < 0.2:  # over the type's length limit, or none at all
        kind = rng.choice(("y" * 129, ""))
        data = _message(kind, {})
        answers = BAD_BODY
    return f"type {kind[:40]!r}", GrpcSend(mode=Mode.UNARY, data=data, answers=answers)


def oversized(rng: random.Random) -> tuple[str, GrpcSend]:
    """Fields over their limits in a message under the gRPC limit (a refusal naming the
    field), or a whole message over the gRPC limit (the transport's RESOURCE_EXHAUSTED)."""
    if rng.random() < 0.1:
        blob = "x" * (MAX_MESSAGE_BYTES + rng.randrange(1, 1 << 20))
        data = _message("InstanceRequest", _instance_body(metadata={"blob": blob}))
        send = GrpcSend(mode=Mode.UNARY, data=data, answers=frozenset({"RESOURCE_EXHAUSTED"}))
        return f"a message of {len(data)} bytes", send
    field_name, body = rng.choice(
        (
            ("serviceName", {**_instance_body(), "serviceName": "s" * rng.choice((513, 100_000))}),
            ("groupName", {**_instance_body(), "groupName": "g" * 100_000}),
            ("namespace", {**_instance_body(), "namespace": "n" * 100_000}),
            ("type", {**_instance_body(), "type": "registerInstance" * 1000}),
            ("ip", _instance_body(ip="h" * 100_000)),
            ("clusterName", _instance_body(clusterName="c" * 100_000)),
            ("metadata", _instance_body(metadata={"k": "v" * 1_000_000})),
            ("metadata", _instance_body(metadata={f"k{i}": "v" for i in range(10_000)})),
            ("metadata", _instance_body(metadata={"k" * 100_000: "v"})),
            ("port", _instance_body(port=int("9" * 1000))),
            ("weight", _instance_body(weight=float("1e300"))),
        )
    )
    data = _message("InstanceRequest", body)
    # an integer past 64 bits is no JSON number the server's parser takes: the body is bad
    answers = REFUSED_FIELD | BAD_BODY if field_name == "port" else REFUSED_FIELD
    return f"{field_name} oversized ({len(data)} bytes)", GrpcSend(
        mode=Mode.UNARY, data=data, answers=answers
    )


BAD_VALUES: Final[tuple[object, ...]] = ([], {}, [1, "a"], {"a": {"b": 1}})
INSTANCE_FIELDS: Final = (
    "ip",
    "port",
    "weight",
    "enabled",
    "healthy",
    "clusterName",
    "metadata",
    "ephemeral",
)
SCALAR_BAD: Final[Mapping[str, tuple[object, ...]]] = {
    "port": ("eighty", -1, 0, 65_536, 1.5, ""),
    "weight": ("heavy", -1, 10_001),
    "enabled": ("maybe", 2, "yes please"),
    "healthy": ("maybe", 2),
    "metadata": ("a string", 5, True),
    "ephemeral": (False, "false", "maybe"),
    "ip": ("", "1.2.3.4:5"),
    "type": (5, True, "", "upsert", None),
}


def bad_fields(rng: random.Random) -> tuple[str, GrpcSend]:
    """A bad type (or value) in one InstanceRequest field: the body's, or the instance's."""
    top = ("namespace", "groupName", "serviceName", "type", "instance")
    name = rng.choice(top + INSTANCE_FIELDS)
    values = BAD_VALUES + SCALAR_BAD.get(name, ())
    if name == "metadata":  # an empty object is metadata too
        values = tuple(v for v in values if v != {})
    if name == "instance":
        values = ([], "an instance", 5, None, True)
    if name == "serviceName":
        values = (*BAD_VALUES, None, "")
    value = rng.choice(values)
    body = _instance_body()
    if name in top:
        body[name] = value
    else:
        body["instance"] = {**body["instance"], name: value}
    data = _message("InstanceRequest", body)
    send = GrpcSend(mode=Mode.UNARY, data=data, answers=REFUSED_FIELD)
    return f"InstanceRequest {name}={orjson.dumps(value).decode()[:40]}", send


def no_setup(rng: random.Random) -> tuple[str, GrpcSend]:
    """A request on a channel that never opened its stream with ConnectionSetup."""
    kind = rng.choice(("HealthCheckRequest", "InstanceRequest", "ServiceQueryRequest"))
    data = _message(kind, _instance_body() if kind == "InstanceRequest" else {})
    send = GrpcSend(mode=Mode.UNREGISTERED, data=data, answers=frozenset({"ErrorResponse:301"}))
    return f"{kind} without ConnectionSetup", send


def garbage_stream(rng: random.Random) -> tuple[str, GrpcSend]:
    """A stream that does its setup, then sends what no client should on it."""
    chunks = tuple(
        rng.choice(
            (
                rng.randbytes(rng.randrange(1, 512)),
                _message("InstanceRequest", _instance_body()),  # a request on the stream
                _message("NotifySubscriberResponse", {"requestId": "no-such-push"}),
                _message("ConnectionSetupRequest", {"clientVersion": "again"}),
                _message("HealthCheckResponse", raw=b"[not an object]"),
                b"",
            )
        )
        for _ in range(rng.randrange(1, 6))
    )
    send = GrpcSend(
        mode=Mode.GARBAGE_STREAM,
        stream=chunks,
        answers=frozenset({"stream-closed", "stream-open"}),
    )
    return f"a stream with {len(chunks)} garbage messages after its setup", send


def silent(rng: random.Random) -> tuple[str, GrpcSend]:
    """A client that subscribes, registers (so a push comes) and never answers a push:
    the node closes it after its push attempts, or (no leader to register with, under a
    fault) it is left open."""
    service = f"{SERVICE_PREFIX}silent-{rng.randrange(4)}"
    send = GrpcSend(
        mode=Mode.SILENT,
        service=service,
        answers=frozenset({"closed-by-server", "still-open"}),
    )
    return f"a client of {service} that never answers pushes", send


MAKERS: Final[Mapping[str, Callable[[random.Random], tuple[str, GrpcSend]]]] = {
    "grpc-undecodable": undecodable,
    "grpc-bad-body": bad_body,
    "grpc-unknown-type": unknown_type,
    "grpc-oversized": oversized,
    "grpc-bad-fields": bad_fields,
    "grpc-no-setup": no_setup,
    "grpc-garbage-stream": garbage_stream,
    "grpc-silent-client": silent,
}
"""Each gRPC probe kind (its `ProbeKind` value) → its maker."""


# ------------------------------------------------------------------ sending


def label_of(answer: Answer) -> str:
    """`<type>:<errorCode>`, or `not-nacos:<type>` for an answer not in Nacos's shape."""
    code, result = answer.body.get("errorCode"), answer.body.get("resultCode")
    if not isinstance(code, int) or not isinstance(result, int):
        return f"not-nacos:{answer.type}"
    if code and not isinstance(answer.body.get("message"), str):
        return f"not-nacos:{answer.type}"
    return f"{answer.type}:{code}"


def _status_label(error: grpc.RpcError) -> str:
    code = error.code() if isinstance(error, aio.AioRpcError) else None
    return code.name if code is not None else "rpc-error"


async def exchange(address: str, send: GrpcSend, stop: asyncio.Event) -> str:
    """Send one case to the gRPC endpoint at `address`; its answer's label."""
    try:
        async with asyncio.timeout(GRPC_TIMEOUT_SECONDS + SILENT_WAIT_SECONDS):
            if send.mode is Mode.UNREGISTERED:
                return await _unregistered(address, send.data)
            if send.mode is Mode.GARBAGE_STREAM:
                return await _garbage_stream(address, send.stream)
            client = GrpcTestClient(
                address,
                answer_pushes=send.mode is not Mode.SILENT,
                timeout_seconds=GRPC_TIMEOUT_SECONDS,
            )
            try:
                try:
                    await client.connect()
                except (grpc.RpcError, ConnectionError, OSError):
                    return "connect-failed"
                if send.mode is Mode.SILENT:
                    return await _silent(client, send.service, stop)
                return label_of(await client.raw_request(send.data))
            finally:
                with contextlib.suppress(grpc.RpcError, OSError):
                    await client.close()
    except TimeoutError:
        return "timeout"
    except grpc.RpcError as error:
        return _status_label(error)


async def _unregistered(address: str, data: bytes) -> str:
    channel = aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        unary = channel.unary_unary(
            f"/{payload.REQUEST_SERVICE}/{payload.REQUEST_METHOD}",
            request_serializer=lambda raw: raw,
            response_deserializer=payload.Payload.FromString,
        )
        decoded = payload.decoded(await unary(data, timeout=GRPC_TIMEOUT_SECONDS))
        return label_of(Answer(decoded.type, decoded.body))
    finally:
        await channel.close()


async def _garbage_stream(address: str, chunks: tuple[bytes, ...]) -> str:
    """ServerCheck, setup, then `chunks` on the stream; whether the server closed it."""
    channel = aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def messages() -> AsyncIterator[bytes]:
        while (item := await outgoing.get()) is not None:
            yield item

    try:
        check = channel.unary_unary(
            f"/{payload.REQUEST_SERVICE}/{payload.REQUEST_METHOD}",
            request_serializer=lambda raw: raw,
            response_deserializer=payload.Payload.FromString,
        )
        await check(_message("ServerCheckRequest"), timeout=GRPC_TIMEOUT_SECONDS)
        stream = channel.stream_stream(
            f"/{payload.STREAM_SERVICE}/{payload.STREAM_METHOD}",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        call = stream(messages())
        setup = {"clientVersion": "naraft-nemesis", "labels": {}, "abilityTable": {}}
        await outgoing.put(_message("ConnectionSetupRequest", setup))
        for chunk in chunks:
            await outgoing.put(chunk)

        async def drain() -> None:
            async for _ in call:
                pass

        try:
            async with asyncio.timeout(STREAM_WAIT_SECONDS):
                await drain()
        except TimeoutError:
            return "stream-open"
        except grpc.RpcError:
            return "stream-closed"
        return "stream-closed"
    finally:
        await outgoing.put(None)
        await channel.close()


async def _silent(client: GrpcTestClient, service: str, stop: asyncio.Event) -> str:
    subscribe = {**NAMES, "serviceName": service, "clusters": "", "subscribe": True}
    await client.request("SubscribeServiceRequest", subscribe)
    register = {
        **NAMES,
        "serviceName": service,
        "type": "registerInstance",
        "instance": {"ip": "10.203.0.1", "port": 80, "ephemeral": True},
    }
    await client.request("InstanceRequest", register)
    ended = asyncio.create_task(client.stream_ended.wait())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait(
            {ended, stopped}, timeout=SILENT_WAIT_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        ended.cancel()
        stopped.cancel()
    return "closed-by-server" if client.stream_ended.is_set() else "still-open"


async def healthy(address: str) -> str | None:
    """None when a new connection to `address` gets its HealthCheck answered; else why not."""
    client = GrpcTestClient(address, timeout_seconds=GRPC_TIMEOUT_SECONDS)
    try:
        async with asyncio.timeout(GRPC_TIMEOUT_SECONDS * 2):
            await client.connect()
            answer = await client.request("HealthCheckRequest", {})
        return None if answer.ok else f"health check answered {label_of(answer)}"
    except (grpc.RpcError, ConnectionError, OSError, TimeoutError) as error:
        return f"no gRPC health check answer: {type(error).__name__}"
    finally:
        with contextlib.suppress(grpc.RpcError, OSError):
            await client.close()
