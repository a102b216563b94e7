"""Config over gRPC: the 2.x request types on `ConfigService`, and the
`ConfigChangeNotifyRequest` pushes to the connections listening on this node.

- `ConfigPublishRequest` and `ConfigRemoveRequest` are writes (run on the leader). A
  `casMd5` that no longer matches is refused as Nacos's handler does: the response type
  with `errorCode` 500 and its message, not an `ErrorResponse`.
- `ConfigQueryRequest` reads after the read barrier, so it runs where the barrier passes:
  on the leader, a follower sending it there as it sends a write. A read that starts after
  an acknowledged publish sees it on every node, as the v1 reads do. A config that does not
  exist is answered `errorCode` 300 ("config data not exist", Nacos's `CONFIG_NOT_FOUND`),
  which the 2.x clients read as "absent".
- `ConfigBatchListenRequest` adds (`listen` true) or removes the calling connection as a
  listener of each config it names, and answers at once with those whose MD5 differs from
  the one the client holds (this node's applied state, "" for an absent config).
- Every applied change of a listened config (on any node: the replica's applied-changes
  event fires on each) sends the listening connections of this node a
  `ConfigChangeNotifyRequest`; the client then asks again. One push is in flight per
  (connection, config) and at most one more is owed after it. A connection's listens are
  forgotten when it closes.

Gray (betaIps) and tag configs are refused 501 with the v1 API's messages, and so is an
`encryptedDataKey`, which naraft does not store (dropping it would leave the client
unable to read its own config).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from naraft.configs import validate
from naraft.configs.model import ConfigKey
from naraft.configs.service import CAS_FAILED_MESSAGE, ConfigService
from naraft.configs.state import changed_configs
from naraft.configs.validate import RawPublish
from naraft.errors import ConflictError, InvalidArgumentError, UnavailableError, UnsupportedError
from naraft.grpc.connections import Connection, ConnectionTable, PushSlots
from naraft.grpc.errors import Code, failed, ok
from naraft.grpc.server import Access, Call, GrpcServer, Route

logger = logging.getLogger(__name__)

CONFIG_NOT_FOUND: Final = 300  # Nacos's ConfigQueryResponse.CONFIG_NOT_FOUND
NOT_FOUND_MESSAGE: Final = "config data not exist"
MAX_LISTENS: Final = 10_000  # configs one connection may listen to
MAX_FIELD_CHARS: Final = 4096  # any text field but the content (validate bounds it tighter)
NOTIFY: Final = "ConfigChangeNotifyRequest"
_UNSUPPORTED_KEY: Final = (
    "encrypted configs (encryptedDataKey) are not supported by naraft: publish without a KMS filter"
)

READ: Final = Access("config", "r")
WRITE: Final = Access("config", "w")


def _optional(body: Mapping[str, Any], name: str, *, limit: int = MAX_FIELD_CHARS) -> str | None:
    """A string field, None when absent or null; InvalidArgumentError naming it when it is
    not a string or longer than `limit`."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError(name, "must be a string")
    if len(value) > limit:
        raise InvalidArgumentError(name, f"must be at most {limit} characters")
    return value


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def config_key(body: Mapping[str, Any]) -> ConfigKey:
    """The config a request (or a listen context) names, by the v1 rules."""
    tenant = validate.request_tenant(_optional(body, "tenant"))
    return validate.config_key(_optional(body, "dataId"), _optional(body, "group"), tenant)


def _context(key: ConfigKey) -> dict[str, str]:
    return {"dataId": key.data_id, "group": key.group, "tenant": key.tenant}


class ConfigRoutes:
    """The config request types of one node; see the module docstring."""

    def __init__(
        self,
        service: ConfigService,
        server: GrpcServer,
        *,
        push_timeout_seconds: float = 3.0,
        max_listens: int = MAX_LISTENS,
    ) -> None:
        self._service = service
        self._server = server
        self._push_timeout = push_timeout_seconds
        self._max_listens = max_listens
        self._listeners: dict[ConfigKey, set[str]] = {}  # config -> connection ids
        self._listened: dict[str, set[ConfigKey]] = {}  # connection id -> configs
        self._pushes = PushSlots[tuple[str, ConfigKey]](self._push, what="config")

    def routes(self) -> list[Route]:
        return [
            Route(
                kind="ConfigQueryRequest",
                response="ConfigQueryResponse",
                access=READ,
                write=self._query,  # runs where the read barrier passes (the leader)
            ),
            Route(
                kind="ConfigPublishRequest",
                response="ConfigPublishResponse",
                access=WRITE,
                write=self._publish,
            ),
            Route(
                kind="ConfigRemoveRequest",
                response="ConfigRemoveResponse",
                access=WRITE,
                write=self._remove,
            ),
            Route(
                kind="ConfigBatchListenRequest",
                response="ConfigChangeBatchListenResponse",
                handle=self._listen,  # the read right is checked per listened config
            ),
        ]

    def attach(self, connections: ConnectionTable) -> None:
        """Forget the listens of the connections that close; show the listens in the
        endpoint's counts (the pushes are counted by the connections)."""
        connections.on_close(self._closed)
        self._server.add_counts(lambda: {"config_listens": self.listens})

    @property
    def listens(self) -> int:
        """(connection, config) pairs listened on this node."""
        return sum(len(keys) for keys in self._listened.values())

    # ------------------------------------------------------------------ steps

    async def _query(self, call: Call) -> dict[str, Any]:
        key = config_key(call.body)
        if not _blank(_optional(call.body, "tag")):
            raise UnsupportedError(validate.UNSUPPORTED_TAG)
        await self._service.read_barrier()
        record = self._service.state.get(key)
        if record is None:
            return failed(CONFIG_NOT_FOUND, NOT_FOUND_MESSAGE)
        return ok(
            content=record.content,
            md5=record.md5,
            lastModified=record.modify_ms,
            contentType=record.type,
            encryptedDataKey="",
            isBeta=False,
            tag=False,
        )

    async def _publish(self, call: Call) -> dict[str, Any]:
        addition = call.body.get("additionMap")
        if addition is None:
            addition = {}
        if not isinstance(addition, dict):
            raise InvalidArgumentError("additionMap", "must be an object")
        if not _blank(_optional(addition, "betaIps")):
            raise UnsupportedError(validate.UNSUPPORTED_GRAY)
        if not _blank(_optional(addition, "tag")):
            raise UnsupportedError(validate.UNSUPPORTED_TAG)
        if not _blank(_optional(addition, "encryptedDataKey")):
            raise UnsupportedError(_UNSUPPORTED_KEY)
        # validate.content measures the bytes; this bound only keeps the text finite
        max_chars = 4 * self._service.settings.max_content_bytes
        raw = RawPublish(
            data_id=_optional(call.body, "dataId"),
            group=_optional(call.body, "group"),
            tenant=validate.request_tenant(_optional(call.body, "tenant")),
            content=_optional(call.body, "content", limit=max_chars),
            app_name=_optional(addition, "appName"),
            type=_optional(addition, "type"),
            desc=_optional(addition, "desc"),
            config_tags=_optional(addition, "config_tags") or _optional(addition, "configTags"),
            cas_md5=_optional(call.body, "casMd5"),
        )
        src_user = _optional(addition, "src_user") or ""
        try:
            await self._service.publish(raw, src_ip=call.client.client_ip, src_user=src_user)
        except ConflictError:
            return failed(Code.SERVER_ERROR, CAS_FAILED_MESSAGE)
        return ok()

    async def _remove(self, call: Call) -> dict[str, Any]:
        key = config_key(call.body)
        if not _blank(_optional(call.body, "tag")):
            raise UnsupportedError(validate.UNSUPPORTED_TAG)
        await self._service.delete(key, src_ip=call.client.client_ip)
        return ok()

    async def _listen(self, call: Call) -> dict[str, Any]:
        listen = call.body.get("listen", True)
        if not isinstance(listen, bool):
            raise InvalidArgumentError("listen", "must be true or false")
        contexts = call.body.get("configListenContexts")
        if contexts is None:
            contexts = []
        if not isinstance(contexts, list):
            raise InvalidArgumentError("configListenContexts", "must be a list")
        if len(contexts) > self._max_listens:
            raise InvalidArgumentError(
                "configListenContexts", f"must hold at most {self._max_listens}"
            )
        md5s: dict[ConfigKey, str] = {}
        for context in contexts:  # every one valid and allowed before any is listened
            if not isinstance(context, dict):
                raise InvalidArgumentError("configListenContexts", "each must be an object")
            key = config_key(context)
            md5 = _optional(context, "md5", limit=validate.MAX_CAS_MD5_CHARS) or ""
            self._server.require(call.identity, READ, context)
            md5s[key] = md5
        connection_id = call.client.id
        if not listen:
            self._forget(connection_id, md5s)
            return ok(changedConfigs=[])
        held = self._listened.get(connection_id, set())
        added = [key for key in md5s if key not in held]
        if len(held) + len(added) > self._max_listens:
            raise InvalidArgumentError(
                "configListenContexts",
                f"a connection may listen to at most {self._max_listens} configs",
            )
        if added:
            held = self._listened.setdefault(connection_id, held)
        for key in added:
            held.add(key)
            self._listeners.setdefault(key, set()).add(connection_id)
        client = call.client
        if isinstance(client, Connection) and client.closed.is_set():
            await self._closed(client)  # it closed meanwhile: its close listener has run
        state = self._service.state
        changed = [_context(key) for key, md5 in md5s.items() if state.md5_of(key) != md5]
        return ok(changedConfigs=changed)

    def _forget(self, connection_id: str, keys: Iterable[ConfigKey]) -> None:
        held = self._listened.get(connection_id)
        if held is None:
            return
        for key in keys:
            if key not in held:
                continue
            held.discard(key)
            by_key = self._listeners.get(key)
            if by_key is not None:
                by_key.discard(connection_id)
                if not by_key:
                    del self._listeners[key]
        if not held:
            del self._listened[connection_id]

    async def _closed(self, connection: Connection) -> None:
        self._forget(connection.id, tuple(self._listened.get(connection.id, ())))

    # ----------------------------------------------------------------- pushes

    async def settled(self) -> None:
        """Return once no push is in flight (their outcomes counted)."""
        await self._pushes.settled()

    def on_changes(self, datum_keys: Iterable[str]) -> None:
        """The applied-changes listener (runs inside apply: only schedules pushes)."""
        if not self._listeners:
            return
        for key in changed_configs(datum_keys):
            for connection_id in self._listeners.get(key, ()):
                self._pushes.request((connection_id, key))

    async def _push(self, slot: tuple[str, ConfigKey]) -> bool:
        """Tell the connection the config changed; False once it no longer listens."""
        connection_id, key = slot
        connection = self._server.connections.get(connection_id)
        if connection is None or key not in self._listened.get(connection_id, ()):
            return False
        try:
            await connection.push(
                NOTIFY,
                {**_context(key), "module": "config"},
                timeout_seconds=self._push_timeout,
            )
        except UnavailableError:
            return False  # the connection closed: its client listens again
        return True
