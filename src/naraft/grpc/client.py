"""A small Nacos 2.x gRPC client: what the tests, the chaos workload and the benchmark
speak to a node's gRPC port, exactly as a 2.x SDK does on the wire.

`connect()` does the SDK's handshake (`ServerCheckRequest` on the unary service, then
`ConnectionSetupRequest` as the stream's first message); `request()` sends one request and
returns the answer's type and body; the server's pushes arrive in `pushes` and are
answered at once with the matching response type and `requestId` (unless `answer_pushes`
is False: a client that never acknowledges, for the tests of the server's bounds).

It imports nothing of the server: only `naraft.grpc.payload`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import grpc
from grpc import aio

from naraft.grpc import payload

CLIENT_VERSION: Final = "naraft-grpc-client:1"
DEFAULT_OFFSET: Final = 1000


@dataclass(frozen=True, slots=True)
class Answer:
    type: str
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.body.get("errorCode", 0) == 0 and self.body.get("resultCode", 200) == 200)


def grpc_address(http_address: str, offset: int = DEFAULT_OFFSET) -> str:
    """`host:port` of a node's HTTP API -> its gRPC `host:port+offset`."""
    host, _, port = http_address.rpartition(":")
    return f"{host}:{int(port) + offset}"


class GrpcTestClient:
    """One 2.x connection to one node; see the module docstring."""

    def __init__(
        self,
        address: str,
        *,
        labels: Mapping[str, str] | None = None,
        tenant: str = "",
        access_token: str | None = None,
        answer_pushes: bool = True,
        timeout_seconds: float = 5.0,
        root_certificates: bytes | None = None,
    ) -> None:
        """`root_certificates` (PEM): speak TLS, trusting that CA for the node's
        certificate."""
        self.address = address
        self._labels = dict(labels or {"source": "sdk", "module": "naming"})
        self._tenant = tenant
        self.access_token = access_token
        self._answer_pushes = answer_pushes
        self._timeout = timeout_seconds
        self._root_certificates = root_certificates
        self._channel: aio.Channel | None = None
        self._outgoing: asyncio.Queue[Any] = asyncio.Queue()
        self._stream: Any = None
        self._reader: asyncio.Task[None] | None = None
        self.connection_id = ""
        self.pushes: asyncio.Queue[Answer] = asyncio.Queue()
        self.stream_ended = asyncio.Event()
        self._ids = 0

    async def connect(self) -> GrpcTestClient:
        options = [("grpc.use_local_subchannel_pool", 1)]
        if self._root_certificates is None:
            channel = aio.insecure_channel(self.address, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=self._root_certificates)
            channel = aio.secure_channel(self.address, credentials, options=options)
        self._channel = channel
        check = await self.request("ServerCheckRequest", {})
        if check.type != "ServerCheckResponse":
            raise ConnectionError(f"server check answered {check.type}: {check.body}")
        self.connection_id = str(check.body.get("connectionId", ""))
        stream = channel.stream_stream(
            f"/{payload.STREAM_SERVICE}/{payload.STREAM_METHOD}",
            request_serializer=payload.serialize,
            response_deserializer=payload.Payload.FromString,
        )
        self._stream = stream(self._messages())
        setup = {
            "clientVersion": CLIENT_VERSION,
            "tenant": self._tenant,
            "labels": self._labels,
            "abilityTable": {},
            "module": "internal",
            "headers": {},
        }
        await self._outgoing.put(payload.build("ConnectionSetupRequest", setup))
        self._reader = asyncio.create_task(self._read())
        return self

    async def _messages(self) -> AsyncIterator[Any]:
        while True:
            message = await self._outgoing.get()
            if message is None:
                return
            yield message

    async def _read(self) -> None:
        try:
            async for message in self._stream:
                decoded = payload.decoded(message)
                await self.pushes.put(Answer(decoded.type, decoded.body))
                if self._answer_pushes and decoded.type.endswith("Request"):
                    kind = decoded.type[: -len("Request")] + "Response"
                    body = {"resultCode": 200, "errorCode": 0, "success": True}
                    body["requestId"] = decoded.body.get("requestId", "")
                    await self._outgoing.put(payload.build(kind, body))
        except (grpc.RpcError, asyncio.CancelledError):
            pass
        finally:
            self.stream_ended.set()

    def _next_id(self) -> str:
        self._ids += 1
        return str(self._ids)

    async def request(
        self, kind: str, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """Send one request; its answer (an `ErrorResponse` is an answer too)."""
        merged = dict(headers or {})
        if self.access_token is not None:
            merged.setdefault("accessToken", self.access_token)
        message = payload.build(kind, {"requestId": self._next_id(), **body}, merged)
        return await self.raw_request(payload.serialize(message))

    async def raw_request(self, data: bytes) -> Answer:
        """Send bytes as they are (for the tests of undecodable payloads)."""
        assert self._channel is not None, "connect() first"
        unary = self._channel.unary_unary(
            f"/{payload.REQUEST_SERVICE}/{payload.REQUEST_METHOD}",
            request_serializer=lambda raw: raw,
            response_deserializer=payload.Payload.FromString,
        )
        answer = await unary(data, timeout=self._timeout)
        decoded = payload.decoded(answer)
        return Answer(decoded.type, decoded.body)

    async def next_push(self, kind: str, timeout_seconds: float = 10.0) -> Answer:
        """The next push of type `kind` (others on the way are dropped)."""
        async with asyncio.timeout(timeout_seconds):
            while True:
                push = await self.pushes.get()
                if push.type == kind:
                    return push

    async def close(self) -> None:
        await self._outgoing.put(None)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def __aenter__(self) -> GrpcTestClient:
        return await self.connect()

    async def __aexit__(self, *_: object) -> None:
        await self.close()
