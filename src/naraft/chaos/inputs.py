"""The input nemesis: what callers send, as a fault of its own.

While a schedule's faults run, `InputNemesis` sends valid-but-extreme and invalid requests
to random nodes: kv values at the documented limit (incompressible), every switch at its
bounds and beyond, instance registrations with extreme weights, ports, metadata sizes and
unicode, oversized bodies, too many parameters, malformed HTTP over raw sockets, slow
clients that trickle a request and walk away, an outsider's Raft stream upgrades and
batches (unsigned, forged or stale); and on the Nacos 2.x gRPC port
(`naraft.chaos.grpc_inputs`): undecodable bytes, bodies that are not JSON objects, unknown
request types, oversized fields and messages, bad types in every InstanceRequest field,
requests without ConnectionSetup, streams that send garbage after it, and clients that
never answer a push. Every request is drawn from one seeded
`random.Random` (`ProbeFactory`), so a seed names the same sequence of requests.

Its requests are not part of the linearizability history: its keys (`nemesis/...`) and
services (`nemesis-...`) are its own. Whatever it gets acknowledged (2xx) is remembered and
`check` looks for it on every node after healing, like the workload's write-once keys; a
switch must hold the last value acknowledged for it (unless a later request for it has an
unknown outcome). `check` also holds the answers to their contract: no invalid input is
acknowledged, no valid one refused with a 4xx, nothing answered with a 5xx other than
503/507 (no leader, full disk) and no malformed request answered 2xx; each gRPC request
gets one of the answers its case names (a Nacos-shaped refusal, or RESOURCE_EXHAUSTED over
the message limit), and after healing every node's gRPC port answers a health check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import hmac
import io
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from naraft.api.app import MAX_BODY_BYTES
from naraft.api.core_ops import CORE_OPS_LOG_PATH, CORE_OPS_RAFT_PATH
from naraft.api.params import MAX_PARAM_VALUE_CHARS
from naraft.api.v1.operator import (
    CORE_CLUSTER,
    CORE_NODES,
    HEALTH_CHECKERS,
    OPERATOR,
    OPS,
    SERVER_STATE,
)
from naraft.chaos import grpc_inputs
from naraft.chaos.cluster import ChaosCluster, ChaosNode
from naraft.chaos.configs import local_md5s
from naraft.client import (
    ACTUATOR_HEALTH_PATH,
    ACTUATOR_PROMETHEUS_PATH,
    CLIENTS_PATH,
    CLUSTER_PATH,
    CONFIG_HEALTH_PATH,
    CONFIG_LISTENER_PATH,
    CONFIGS_PATH,
    INSTANCE_LIST_PATH,
    INSTANCE_PATH,
    KV_PATH,
    METADATA_BATCH_PATH,
    PUBLISHERS_PATH,
    SWITCHES_PATH,
    WriteOutcome,
    classify_failure,
    classify_write,
)
from naraft.configs.validate import MAX_IDS
from naraft.errors import NaraftError
from naraft.naming.switches import INTEGER_SWITCHES, Switches, switches_view, with_entry
from naraft.naming.validate import MAX_CHECKER_FIELD_CHARS
from naraft.raft.messages import AppendEntries, Envelope
from naraft.raft.types import Entry, Index, NodeId, Term
from naraft.state.kv import MAX_VALUE_BYTES
from naraft.transport import MESSAGES_PATH, STREAM_PATH, encode_batch, signing

KEY_PREFIX: Final = "nemesis/"
UNROUTED_PREFIXES: Final = (
    "/nacos/v1/ns/",
    "/nacos/v1/cs/",
    "/nacos/v1/core/",
    "/nacos/v2/ns/",
    "/naraft/v1/",
    "/nacos/",
    "/",
)
UNSERVED_METHODS: Final = (
    ("PATCH", "/nacos/v1/ns/service/list"),
    ("DELETE", "/nacos/v1/ns/instance/list"),
    ("POST", CORE_NODES),
    ("POST", f"{CORE_CLUSTER}/self"),
    ("PUT", SERVER_STATE),
    ("POST", HEALTH_CHECKERS),
    ("PUT", "/nacos/v1/ns/operator/servers"),
    ("PATCH", f"{KV_PATH}/{KEY_PREFIX}route"),
)
V2_NAMESPACE_CONFIGS: Final = "/nacos/v2/cs/history/configs"
V2_CLIENT: Final = CLIENTS_PATH  # one 2.x connection's detail, by `clientId`
V2_PUBLISHERS: Final = PUBLISHERS_PATH
SERVER_VIEWS: Final = (  # reads of the members, this node and its checkers, in Nacos's shapes
    CORE_NODES,
    HEALTH_CHECKERS,
    f"{CORE_CLUSTER}/simple/nodes",
    f"{CORE_CLUSTER}/self",
    f"{CORE_CLUSTER}/health",
    SERVER_STATE,
    ACTUATOR_HEALTH_PATH,  # Spring Boot's health and metrics, where Nacos's tools look
    ACTUATOR_PROMETHEUS_PATH,
    CONFIG_HEALTH_PATH,  # Nacos's config probe
    f"{OPERATOR}/push/state",  # push counts (never reset here: that drops pending retries)
    f"{OPS}/cluster/state",  # the local Raft peer at Nacos's deprecated path, by its alias
    f"{OPS}/metrics",
    f"{OPERATOR}/distro/status",
    "/nacos/v2/core/cluster/node/list",  # Nacos 2.x's v2 cluster and operator views
    "/nacos/v2/core/cluster/node/self/health",
    "/nacos/v2/ns/ops/metrics",
    "/nacos/v2/console/namespace/list",
    V2_NAMESPACE_CONFIGS,  # a namespace's configs, no contents
    f"{CLIENTS_PATH}/list",  # Nacos 2.x's client views: the node's connections,
    V2_CLIENT,  # one of them (a made-up or malformed id: refused),
    V2_PUBLISHERS,  # and who registered a service's instances
)
LOG_PATHS: Final = (f"{OPERATOR}/log", f"{OPS}/log", CORE_OPS_LOG_PATH)
NEMESIS_LOGGER: Final = "naraft.nemesis"  # a logger no code writes to: its level is harmless
SERVICE_PREFIX: Final = "nemesis-"
CONFIG_PREFIX: Final = "nemesis-cfg-"
CLONE_TENANT: Final = "nemesis-clones"  # a namespace only the clone probes write
NO_CONFIG_ID: Final = 10**15  # far past any id a campaign's configs reach
BODY_LIMIT: Final = MAX_BODY_BYTES  # the client body limit of naraft's HTTP edge
REQUEST_TIMEOUT_SECONDS: Final = 10.0
RAW_TIMEOUT_SECONDS: Final = 5.0
LOG_FILE: Final = "input-nemesis.log"
MAX_PROBLEMS: Final = 20


class ProbeKind(enum.StrEnum):
    KV_LARGE = "kv-large"  # valid: incompressible values of 256-900 KiB
    KV_LIMIT = "kv-limit"  # valid: a value of exactly the documented limit
    KV_OVER = "kv-over"  # invalid: one byte over the limit
    SWITCH_BOUNDS = "switch-bounds"  # valid: every switch at its bounds
    SWITCH_OVERFLOW = "switch-overflow"  # invalid: huge numbers, 5,000 digits, NaN, junk
    INSTANCE_EXTREME = "instance-extreme"  # valid: extreme weights, ports, metadata, unicode
    INSTANCE_INVALID = "instance-invalid"  # invalid: out-of-range fields
    OVERSIZED_BODY = "oversized-body"  # bodies over the limit, with and without a length
    MANY_PARAMS = "many-params"  # tens of thousands of form parameters
    MALFORMED_HTTP = "malformed-http"  # raw sockets: bad request lines, headers, chunking
    SLOW_CLIENT = "slow-client"  # headers, body or bytes behind a held poll trickled, abandoned
    FORGED_AUTH = "forged-auth"  # forged, expired, alg-none tokens; a client-sent identity
    PEER_FORGED = "peer-forged"  # an outsider's Raft stream upgrades and batches
    CONFIG_EXTREME = "config-extreme"  # valid: large, unicode, names at their length limits
    CONFIG_INVALID = "config-invalid"  # invalid: bad names, blank content, over-long fields
    UNKNOWN_ROUTE = "unknown-route"  # paths no route takes, methods a path does not serve
    METADATA_BATCH = "metadata-batch"  # batch metadata: bad selections, lists at the bound
    CONFIG_CLONE = "config-clone"  # clone by id: lists at the bound, bad bodies, few copies
    CLUSTER_UPDATE = "cluster-update"  # Nacos's cluster update: checkers at bounds, bad fields
    GRPC_UNDECODABLE = "grpc-undecodable"  # bytes that are no Payload message
    GRPC_BAD_BODY = "grpc-bad-body"  # a body that is not JSON, or not an object
    GRPC_UNKNOWN_TYPE = "grpc-unknown-type"  # a type no handler serves; none; too long
    GRPC_OVERSIZED = "grpc-oversized"  # fields over their limits; a message over the limit
    GRPC_BAD_FIELDS = "grpc-bad-fields"  # a bad type or value in each InstanceRequest field
    GRPC_NO_SETUP = "grpc-no-setup"  # a request on a channel without ConnectionSetup
    GRPC_GARBAGE_STREAM = "grpc-garbage-stream"  # garbage on the stream after the setup
    GRPC_SILENT_CLIENT = "grpc-silent-client"  # never answers the pushes it is sent


ALL_KINDS: Final[tuple[ProbeKind, ...]] = tuple(ProbeKind)
DEFAULT_KINDS: Final = ALL_KINDS  # every kind: none may crash, wedge or fork the cluster
RAW_KINDS: Final = frozenset({ProbeKind.MALFORMED_HTTP})
SLOW_KINDS: Final = frozenset({ProbeKind.SLOW_CLIENT, ProbeKind.GRPC_SILENT_CLIENT})
GRPC_KINDS: Final = frozenset(k for k in ProbeKind if k.value in grpc_inputs.MAKERS)
WEIGHTS: Final[Mapping[ProbeKind, int]] = {
    ProbeKind.KV_LARGE: 2,
    ProbeKind.KV_LIMIT: 1,
    ProbeKind.KV_OVER: 1,
    ProbeKind.SWITCH_BOUNDS: 3,
    ProbeKind.SWITCH_OVERFLOW: 3,
    ProbeKind.INSTANCE_EXTREME: 4,
    ProbeKind.INSTANCE_INVALID: 4,
    ProbeKind.OVERSIZED_BODY: 1,
    ProbeKind.MANY_PARAMS: 1,
    ProbeKind.MALFORMED_HTTP: 1,
    ProbeKind.SLOW_CLIENT: 1,
    ProbeKind.FORGED_AUTH: 2,
    ProbeKind.PEER_FORGED: 1,
    ProbeKind.CONFIG_EXTREME: 2,
    ProbeKind.CONFIG_INVALID: 2,
    ProbeKind.UNKNOWN_ROUTE: 1,
    ProbeKind.METADATA_BATCH: 2,
    ProbeKind.CONFIG_CLONE: 2,
    ProbeKind.CLUSTER_UPDATE: 2,
    ProbeKind.GRPC_UNDECODABLE: 2,
    ProbeKind.GRPC_BAD_BODY: 2,
    ProbeKind.GRPC_UNKNOWN_TYPE: 2,
    ProbeKind.GRPC_OVERSIZED: 2,
    ProbeKind.GRPC_BAD_FIELDS: 4,
    ProbeKind.GRPC_NO_SETUP: 1,
    ProbeKind.GRPC_GARBAGE_STREAM: 1,
    ProbeKind.GRPC_SILENT_CLIENT: 1,
}


def parse_kinds(text: str) -> tuple[ProbeKind, ...]:
    """`default` or `all` (every kind), or a comma-separated list."""
    if text in ("default", "all"):
        return tuple(ALL_KINDS)
    return tuple(ProbeKind(part.strip()) for part in text.split(",") if part.strip())


def kinds_text(kinds: Sequence[ProbeKind]) -> str:
    """The `--nemesis-kinds` value that names `kinds` (the inverse of `parse_kinds`)."""
    if tuple(kinds) == ALL_KINDS:
        return "all"
    return ",".join(kinds)


class Expect(enum.Enum):
    ACCEPT = "accept"  # valid: 2xx, or a transient 503/507 under faults
    REFUSE = "refuse"  # invalid: never 2xx
    ANY = "any"  # either is a defensible answer (e.g. 2^40 ms for a switch)


# ------------------------------------------------------------------ what is sent


@dataclass(frozen=True, slots=True, kw_only=True)
class KvAck:
    key: str
    sha256: str
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceAck:
    service: str
    ip: str
    port: int
    cluster: str
    weight: float
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchAck:
    entry: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigAck:
    data_id: str
    md5: str
    length: int


Ack = KvAck | InstanceAck | SwitchAck | ConfigAck


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """One request. HTTP probes have `method`/`path`; raw ones send `chunks` over a socket,
    `pause` seconds apart (a slow client), and walk away when `abandon` is set."""

    kind: ProbeKind
    node: int  # index into the cluster's nodes
    label: str  # one line for humans: what is extreme about it
    expect: Expect
    method: str = "GET"
    path: str = ""
    params: tuple[tuple[str, str], ...] = ()
    form: tuple[tuple[str, str], ...] | None = None
    body: bytes | None = None
    chunked: bool = False
    chunks: tuple[bytes, ...] = ()
    pause: float = 0.0
    abandon: bool = False
    ack: Ack | None = None
    headers: tuple[tuple[str, str], ...] = ()
    grpc: grpc_inputs.GrpcSend | None = None  # a gRPC probe: what to send, answers accepted


def _value(rng: random.Random, size: int) -> str:
    """`size` characters of base64 of random bytes: as incompressible as JSON text gets."""
    raw = rng.randbytes(size * 3 // 4 + 3)
    return base64.b64encode(raw).decode()[:size]


def _shown(value: str) -> str:
    """A probe's value for its one-line label: whole up to 40 characters, else its head and
    length."""
    return value if len(value) <= 40 else f"{value[:20]}...({len(value)} chars)"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


BOOL_SWITCHES: Final = (
    "distro",
    "check",
    "pushEnabled",
    "disableAddIP",
    "sendBeatOnly",
    "enableStandalone",
    "defaultInstanceEphemeral",
    "lightBeatEnabled",
    "autoChangeHealthCheckEnabled",
)
SWITCH_FIELDS: Final[Mapping[str, str]] = {
    "distroThreshold": "distroThreshold",
    "clientBeatInterval": "clientBeatInterval",
    "pushCacheMillis": "defaultPushCacheMillis",
    "defaultCacheMillis": "defaultCacheMillis",
    "masters": "masters",
    "distro": "distroEnabled",
    "check": "healthCheckEnabled",
    "pushEnabled": "pushEnabled",
    "serviceStatusSynchronizationPeriodMillis": "serviceStatusSynchronizationPeriodMillis",
    "serverStatusSynchronizationPeriodMillis": "serverStatusSynchronizationPeriodMillis",
    "healthCheckTimes": "checkTimes",
    "disableAddIP": "disableAddIP",
    "sendBeatOnly": "sendBeatOnly",
    "enableStandalone": "enableStandalone",
    "overriddenServerStatus": "overriddenServerStatus",
    "defaultInstanceEphemeral": "defaultInstanceEphemeral",
    "distroServerExpiredMillis": "distroServerExpiredMillis",
    "lightBeatEnabled": "lightBeatEnabled",
    "autoChangeHealthCheckEnabled": "autoChangeHealthCheckEnabled",
}
"""Switch entry (as PUT names it) → its field in the GET document."""

_DEFAULT_VIEW: Final = switches_view(Switches())
# integers at the bounds a parser might draw: Nacos itself has minimums for some (10 s for
# the push cache) and reads some as Java ints, so a refusal is as defensible as acceptance
INT_BOUNDS: Final = (
    ("1", Expect.ANY),
    ("1000", Expect.ANY),
    ("10000", Expect.ANY),
    ("2147483647", Expect.ANY),
    (str(2**63 - 1), Expect.ANY),
)
INT_BEYOND: Final = (
    "0",
    "-1",
    str(2**63),
    str(2**64),
    str(2**64 + 1),
    "1" + "0" * 30,
    "9" * 5000,
    "1.5",
    "1e3",
    "",
    "  ",
    "abc",
    "0x10",
    "NaN",
    "\u0661\u0662" + "9" * 30,
)
RATIO_BOUNDS: Final = ("0", "1", "0.0", "1.0", "1e-300", "0.5")
RATIO_BEYOND: Final = ("-0.0001", "1.0000001", "nan", "inf", "-inf", "1e400", "9" * 5000, "x")
UNICODE: Final = (
    "\u00e9\u00e8",
    "\u4e2d\u6587",
    "\U0001f600\U0001f525",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "e\u0301\u0302",
    "\u200b\u200d",
    "\ufeff",
    "\U00010348",
)


TOLERATED_RAW: Final = frozenset({"2,000 headers"})
"""Raw requests that are odd but legal HTTP: a 2xx is a defensible answer."""


class ProbeFactory:
    """Draws probes of the enabled kinds from one `random.Random`: the same seed and kinds
    give the same sequence. Names it creates are unique within a run."""

    def __init__(self, rng: random.Random, kinds: Sequence[ProbeKind], nodes: int) -> None:
        if not kinds:
            raise ValueError("no probe kinds")
        self._rng = rng
        self._kinds = list(kinds)
        self._weights = [WEIGHTS[k] for k in self._kinds]
        self._nodes = nodes
        self._seq = 0
        self._makers: Mapping[ProbeKind, Callable[[int], Probe]] = {
            ProbeKind.KV_LARGE: self._kv_large,
            ProbeKind.KV_LIMIT: self._kv_limit,
            ProbeKind.KV_OVER: self._kv_over,
            ProbeKind.SWITCH_BOUNDS: self._switch_bounds,
            ProbeKind.SWITCH_OVERFLOW: self._switch_overflow,
            ProbeKind.INSTANCE_EXTREME: self._instance_extreme,
            ProbeKind.INSTANCE_INVALID: self._instance_invalid,
            ProbeKind.OVERSIZED_BODY: self._oversized_body,
            ProbeKind.MANY_PARAMS: self._many_params,
            ProbeKind.MALFORMED_HTTP: self._malformed_http,
            ProbeKind.SLOW_CLIENT: self._slow_client,
            ProbeKind.FORGED_AUTH: self._forged_auth,
            ProbeKind.PEER_FORGED: self._peer_forged,
            ProbeKind.CONFIG_EXTREME: self._config_extreme,
            ProbeKind.CONFIG_INVALID: self._config_invalid,
            ProbeKind.UNKNOWN_ROUTE: self._unknown_route,
            ProbeKind.METADATA_BATCH: self._metadata_batch,
            ProbeKind.CONFIG_CLONE: self._config_clone,
            ProbeKind.CLUSTER_UPDATE: self._cluster_update,
            **{kind: self._grpc_maker(kind) for kind in GRPC_KINDS},
        }

    def next(self) -> Probe:
        kind = self._rng.choices(self._kinds, self._weights)[0]
        self._seq += 1
        return self._makers[kind](self._rng.randrange(self._nodes))

    def _unique(self) -> str:
        return f"{self._seq}-{self._rng.getrandbits(32):08x}"

    def _grpc_maker(self, kind: ProbeKind) -> Callable[[int], Probe]:
        def make(node: int) -> Probe:
            label, send = grpc_inputs.MAKERS[kind.value](self._rng)
            return Probe(kind=kind, node=node, label=label, expect=Expect.REFUSE, grpc=send)

        return make

    # -------------------------------------------------------------- kv

    def _kv_put(self, kind: ProbeKind, node: int, size: int, expect: Expect) -> Probe:
        key = f"{KEY_PREFIX}{self._unique()}"
        value = _value(self._rng, size)
        ack = (
            KvAck(key=key, sha256=_digest(value), length=size) if expect is Expect.ACCEPT else None
        )
        return Probe(
            kind=kind,
            node=node,
            label=f"PUT kv {key} of {size} bytes",
            expect=expect,
            method="PUT",
            path=f"{KV_PATH}/{key}",
            body=orjson.dumps({"value": value}),
            ack=ack,
        )

    def _kv_large(self, node: int) -> Probe:
        size = self._rng.randrange(256 << 10, 900 << 10)
        return self._kv_put(ProbeKind.KV_LARGE, node, size, Expect.ACCEPT)

    def _kv_limit(self, node: int) -> Probe:
        return self._kv_put(ProbeKind.KV_LIMIT, node, MAX_VALUE_BYTES, Expect.ACCEPT)

    def _kv_over(self, node: int) -> Probe:
        return self._kv_put(ProbeKind.KV_OVER, node, MAX_VALUE_BYTES + 1, Expect.REFUSE)

    # -------------------------------------------------------------- switches

    def _switch(self, node: int, kind: ProbeKind, entry: str, value: str, expect: Expect) -> Probe:
        shown = _shown(value)
        return Probe(
            kind=kind,
            node=node,
            label=f"switch {entry}={shown!r}",
            expect=expect,
            method="PUT",
            path=SWITCHES_PATH,
            form=(("entry", entry), ("value", value)),
            ack=SwitchAck(entry=entry, value=value) if expect is not Expect.REFUSE else None,
        )

    def _switch_bounds(self, node: int) -> Probe:
        rng = self._rng
        group = rng.choice(("int", "int", "ratio", "bool", "status", "masters"))
        if group == "int":
            value, expect = rng.choice(INT_BOUNDS)
            return self._switch(
                node, ProbeKind.SWITCH_BOUNDS, rng.choice(INTEGER_SWITCHES), value, expect
            )
        if group == "ratio":
            return self._switch(
                node,
                ProbeKind.SWITCH_BOUNDS,
                "distroThreshold",
                rng.choice(RATIO_BOUNDS),
                Expect.ACCEPT,
            )
        if group == "bool":
            # only the default value, in odd spellings: flipping disableAddIP or sendBeatOnly
            # would change what the workload and the checksum repair do
            entry = rng.choice(BOOL_SWITCHES)
            default = "true" if _DEFAULT_VIEW[SWITCH_FIELDS[entry]] else "false"
            spelled = rng.choice((default, default.upper(), f"  {default.title()}  "))
            return self._switch(node, ProbeKind.SWITCH_BOUNDS, entry, spelled, Expect.ACCEPT)
        if group == "status":
            value = rng.choice(("UP", "down", "WRITE_ONLY", "READ_ONLY", "STARTING", "  up "))
            return self._switch(
                node, ProbeKind.SWITCH_BOUNDS, "overriddenServerStatus", value, Expect.ACCEPT
            )
        count = rng.choice((1, 3, 1000, 30_000))
        masters = ",".join(
            f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:8848" for i in range(count)
        )
        expect = Expect.ACCEPT if count <= 3 else Expect.ANY
        return self._switch(node, ProbeKind.SWITCH_BOUNDS, "masters", masters, expect)

    def _switch_overflow(self, node: int) -> Probe:
        rng = self._rng
        roll = rng.random()
        kind = ProbeKind.SWITCH_OVERFLOW
        if roll < 0.55:
            entry = rng.choice(INTEGER_SWITCHES)
            return self._switch(node, kind, entry, rng.choice(INT_BEYOND), Expect.REFUSE)
        if roll < 0.7:
            return self._switch(
                node, kind, "distroThreshold", rng.choice(RATIO_BEYOND), Expect.REFUSE
            )
        if roll < 0.8:
            entry = rng.choice(BOOL_SWITCHES)
            value = rng.choice(("yes", "1", "tru", "true" * 100_000, "\u0442rue"))
            return self._switch(node, kind, entry, value, Expect.REFUSE)
        if roll < 0.87:
            value = rng.choice(("SIDEWAYS", "UP" * 1000, "\u00dcP"))
            return self._switch(node, kind, "overriddenServerStatus", value, Expect.REFUSE)
        if roll < 0.93:
            return self._switch(node, kind, "masters", rng.choice((",", " , ,", "")), Expect.REFUSE)
        name = rng.choice(("noSuchSwitch", "x" * 100_000, "clientBeatInterval\u0000", ""))
        return self._switch(node, kind, name, "1", Expect.REFUSE)

    # -------------------------------------------------------------- instances

    def _service(self) -> str:
        return f"{SERVICE_PREFIX}{self._rng.randrange(8)}"

    def _metadata(self) -> dict[str, str]:
        rng = self._rng
        roll = rng.random()
        if roll < 0.3:
            return {}
        if roll < 0.6:  # unicode keys and values
            return {
                f"k{i}{rng.choice(UNICODE)}": "".join(rng.choices(UNICODE, k=rng.randrange(1, 40)))
                for i in range(rng.randrange(1, 20))
            }
        if roll < 0.8:  # every entry allowed, short
            return {f"k{i:03d}": _value(rng, 16) for i in range(128)}
        # the largest values allowed, as many as fit in one parameter's limit (JSON included)
        count = rng.randrange(1, MAX_PARAM_VALUE_CHARS // (16_384 + 16) + 1)
        return {f"big{i}": _value(rng, 16_384) for i in range(count)}

    def _instance_extreme(self, node: int) -> Probe:
        rng = self._rng
        service = self._service()
        if rng.random() < 0.2:
            service = (service + "-" + "x" * 512)[:512]
        ip = rng.choice(
            ("10.200.0.1", "::1", "fe80::1", "2001:db8::ffff", "h" * 253, "n_1.example")
        )
        port = rng.choice((1, 65_535, rng.randrange(1, 65_536)))
        cluster = rng.choice(("DEFAULT", "c" * 64, "Z-9"))
        weight = rng.choice(("0", "10000", "0.000001", "1e-300", "9999.999999", "1"))
        metadata = self._metadata()
        ack = InstanceAck(
            service=service,
            ip=ip,
            port=port,
            cluster=cluster,
            weight=float(weight),
            metadata=metadata,
        )
        form = (
            ("serviceName", service),
            ("ip", ip),
            ("port", str(port)),
            ("clusterName", cluster),
            ("weight", weight),
            ("ephemeral", "false"),
            ("enabled", "true"),
            ("metadata", orjson.dumps(metadata).decode()),
        )
        label = (
            f"register {service[:40]} {ip[:40]}:{port} cluster {cluster[:16]} weight {weight} "
            f"metadata {len(metadata)} entries, {len(form[-1][1])} chars"
        )
        return Probe(
            kind=ProbeKind.INSTANCE_EXTREME,
            node=node,
            label=label,
            expect=Expect.ACCEPT,
            method="POST",
            path=INSTANCE_PATH,
            form=form,
            ack=ack,
        )

    def _instance_invalid(self, node: int) -> Probe:
        rng = self._rng
        fields = {
            "serviceName": self._service(),
            "ip": "10.201.0.1",
            "port": "8080",
            "ephemeral": "false",
        }
        broken, value = rng.choice(
            (
                ("weight", "10000.0001"),
                ("weight", "-0.1"),
                ("weight", "nan"),
                ("weight", "inf"),
                ("weight", "1e309"),
                ("weight", "9" * 5000),
                ("port", "0"),
                ("port", "65536"),
                ("port", "-1"),
                ("port", str(2**64)),
                ("port", "9" * 5000),
                ("port", "80.5"),
                ("serviceName", "\u0441\u0435\u0440\u0432\u0438\u0441"),
                ("serviceName", "s" * 513),
                ("serviceName", "a@@b@@c"),
                ("serviceName", ""),
                ("ip", "1.2.3.4:5"),
                ("ip", "\uff11\uff12\uff17.0.0.1"),
                ("ip", "h" * 254),
                ("clusterName", "\u00e9"),
                ("clusterName", "c" * 65),
                ("namespaceId", "\u4e2d"),
                ("ephemeral", "maybe"),
                ("metadata", "[1]"),
                ("metadata", "{"),
                ("metadata", '{"a": {"nested": 1}}'),
                ("metadata", orjson.dumps({f"k{i}": "v" for i in range(129)}).decode()),
                ("metadata", orjson.dumps({"k": "v" * 16_385}).decode()),
                ("metadata", orjson.dumps({"k" * 257: "v"}).decode()),
            )
        )
        fields[broken] = value
        shown = _shown(value)
        return Probe(
            kind=ProbeKind.INSTANCE_INVALID,
            node=node,
            label=f"register with {broken}={shown!r}",
            expect=Expect.REFUSE,
            method="POST",
            path=INSTANCE_PATH,
            form=tuple(fields.items()),
        )

    # -------------------------------------------------------------- configs

    def _config_extreme(self, node: int) -> Probe:
        rng = self._rng
        data_id = f"{CONFIG_PREFIX}{self._unique()}"
        roll = rng.random()
        if roll < 0.4:
            content = _value(rng, rng.randrange(256 << 10, 900 << 10))
            what = f"{len(content)} bytes"
        elif roll < 0.8:
            content = "".join(rng.choice(UNICODE) for _ in range(rng.randrange(1, 2000)))
            what = "unicode"
        else:
            data_id = (data_id + "." + "x" * 255)[:255]  # dataId at its 255-character limit
            content = "k=v"
            what = "a 255-character dataId"
        encoded = content.encode("utf-8", "surrogatepass")
        return Probe(
            kind=ProbeKind.CONFIG_EXTREME,
            node=node,
            label=f"publish config {data_id[:40]} ({what})",
            expect=Expect.ACCEPT,
            method="POST",
            path=CONFIGS_PATH,
            form=(("dataId", data_id), ("group", "DEFAULT_GROUP"), ("content", content)),
            ack=ConfigAck(
                data_id=data_id,
                md5=hashlib.md5(encoded).hexdigest(),
                length=len(encoded),
            ),
        )

    def _config_invalid(self, node: int) -> Probe:
        rng = self._rng
        fields = {
            "dataId": f"{CONFIG_PREFIX}{self._unique()}",
            "group": "DEFAULT_GROUP",
            "content": "k=v",
        }
        broken, value = rng.choice(
            (
                ("dataId", "a b"),
                ("dataId", "a/b"),
                ("dataId", "a+b"),
                ("dataId", "x" * 256),
                ("dataId", ""),
                ("group", "g g"),
                ("group", "g" * 129),
                ("group", "g#1"),
                ("tenant", "t t"),
                ("tenant", "t" * 129),
                ("content", ""),
                ("content", "   "),
                ("desc", "d" * 129),
                ("config_tags", ",".join("t" * 6)),
                ("config_tags", "t" * 65),
                ("type", "y" * 33),
                ("appName", "a" * 129),
                ("casMd5", "m" * 33),
            )
        )
        fields[broken] = value
        shown = _shown(value)
        return Probe(
            kind=ProbeKind.CONFIG_INVALID,
            node=node,
            label=f"publish config with {broken}={shown!r}",
            expect=Expect.REFUSE,
            method="POST",
            path=CONFIGS_PATH,
            form=tuple(fields.items()),
        )

    # -------------------------------------------------------------- batch metadata

    def _metadata_batch(self, node: int) -> Probe:
        """Nacos's batch metadata: a valid request that changes nothing the nemesis checks
        (a service no one registers; a key no instance holds, deleted from every persistent
        instance of a nemesis service; a list at its bound), or one broken field."""
        rng = self._rng
        absent = [{"ip": f"10.202.{i // 250}.{i % 250 + 1}", "port": 80} for i in range(1_000)]
        fields = {
            "serviceName": f"{SERVICE_PREFIX}meta-{self._unique()}",
            "instances": orjson.dumps(absent[: rng.randrange(1, 4)]).decode(),
            "metadata": '{"nemesis-mark": "x"}',
        }
        method = rng.choice(("PUT", "DELETE"))
        if rng.random() < 0.4:
            choice = rng.randrange(3)
            if choice == 0:  # every persistent instance, a key none holds
                fields = {**fields, "serviceName": self._service(), "consistencyType": "persist"}
                method = "DELETE"
                label = f"DELETE an absent key from {fields['serviceName'][:40]}"
            elif choice == 1:
                fields["instances"] = orjson.dumps(absent).decode()
                label = f"{method} metadata of {len(absent)} listed instances, none present"
            else:
                label = f"{method} metadata on a service no one registered"
            expect = Expect.ACCEPT
        else:
            broken, value = rng.choice(
                (
                    ("consistencyType", rng.choice(("both", "EPHEMERAL", "x" * 3_000))),
                    ("instances", rng.choice(("{", "{}", "[1]", '[{"ip": "1.2.3.4"}]'))),
                    ("instances", '[{"ip": "10.0.0.1", "port": 0}]'),
                    ("instances", '[{"ip": "h' + "h" * 253 + '", "port": 80}]'),
                    ("instances", orjson.dumps(absent + absent[:1]).decode()),
                    ("metadata", ""),
                    ("metadata", "[1]"),
                    ("metadata", orjson.dumps({f"k{i}": "v" for i in range(129)}).decode()),
                    ("metadata", orjson.dumps({"k": "v" * 16_385}).decode()),
                    ("serviceName", "a@@b@@c"),
                    ("serviceName", ""),
                )
            )
            fields[broken] = value
            shown = _shown(value)
            label = f"{method} metadata batch with {broken}={shown!r}"
            expect = Expect.REFUSE
        return Probe(
            kind=ProbeKind.METADATA_BATCH,
            node=node,
            label=label,
            expect=expect,
            method=method,
            path=METADATA_BATCH_PATH,
            form=tuple(fields.items()),
        )

    # -------------------------------------------------------------- cluster update

    def _cluster_update(self, node: int) -> Probe:
        """Nacos's cluster update on a nemesis service: checkers with their fields at the
        bounds, the largest metadata (taken, or refused when the service does not exist
        yet: either answer is right); or one field broken (400)."""
        rng = self._rng
        long_text = "".join(rng.choices(UNICODE, k=MAX_CHECKER_FIELD_CHARS))[
            :MAX_CHECKER_FIELD_CHARS
        ]
        fields = {
            "serviceName": self._service(),
            "clusterName": rng.choice(("DEFAULT", "nemesis", "n-" + "c" * 62)),
            "checkPort": str(rng.choice((0, 1, 80, 65_535))),
            "useInstancePort4Check": rng.choice(("true", "FALSE")),
            "healthChecker": rng.choice(
                (
                    '{"type":"none"}',
                    orjson.dumps(
                        {"type": "HTTP", "path": long_text, "expectedResponseCode": 599}
                    ).decode(),
                    orjson.dumps(
                        {"type": "MYSQL", "user": "u", "pwd": long_text, "cmd": "select 1"}
                    ).decode(),
                )
            ),
            "metadata": orjson.dumps(self._metadata()).decode(),
        }
        if rng.random() < 0.4:
            checker = fields["healthChecker"][:30]
            label = f"cluster update of {fields['serviceName']}, checker {checker}"
            expect = Expect.ANY
        else:
            broken, value = rng.choice(
                (
                    ("clusterName", "a b"),
                    ("clusterName", "c" * 65),
                    ("checkPort", rng.choice(("-1", "65536", "1e3", "9" * 100))),
                    ("useInstancePort4Check", rng.choice(("", "yes", "1"))),
                    ("healthChecker", rng.choice(("", "{", "[]", '{"type":"GRPC"}', "{}"))),
                    ("healthChecker", '{"type":"HTTP","expectedResponseCode":600}'),
                    ("healthChecker", orjson.dumps({"type": "HTTP", "path": "p" * 1025}).decode()),
                    ("healthChecker", '{"type":"MYSQL","cmd":["select 1"]}'),
                    ("healthChecker", '{"type":"TCP","x":"' + "x" * 5_000 + '"}'),
                    ("metadata", "[1]"),
                    ("serviceName", "a@@b@@c"),
                )
            )
            fields[broken] = value
            shown = _shown(value)
            label = f"cluster update with {broken}={shown!r}"
            expect = Expect.REFUSE
        return Probe(
            kind=ProbeKind.CLUSTER_UPDATE,
            node=node,
            label=label,
            expect=expect,
            method="PUT",
            path=CLUSTER_PATH,
            form=tuple(fields.items()),
        )

    # -------------------------------------------------------------- config clone

    def _config_clone(self, node: int) -> Probe:
        """Nacos's config clone: a list at its bound naming no config, an empty list, or a
        few small ids copied into the nemesis's own namespace under nemesis names (each an
        answer in Nacos's RestResult, 200); or a body broken in one way (400)."""
        rng = self._rng
        params = [("clone", "true"), ("tenant", CLONE_TENANT), ("policy", "OVERWRITE")]
        if rng.random() < 0.4:
            choice = rng.randrange(3)
            if choice == 0:
                items: list[object] = [{"cfgId": NO_CONFIG_ID + i} for i in range(MAX_IDS)]
                label = f"clone {MAX_IDS} ids that name no config"
            elif choice == 1:
                items = [None] * rng.randrange(2)
                label = f"clone {items}"
            else:
                items = [
                    {"cfgId": rng.randrange(1, 200), "dataId": f"{CONFIG_PREFIX}{self._unique()}"}
                    for _ in range(rng.randrange(1, 4))
                ]
                label = f"clone {len(items)} small ids into {CLONE_TENANT}"
            body, expect = orjson.dumps(items), Expect.ACCEPT
        else:
            body = rng.choice(
                (
                    b"{",
                    b'{"cfgId": 1}',
                    b"[1]",
                    b'[{"dataId": "x"}]',
                    b'[{"cfgId": -1}]',
                    b'[{"cfgId": 1e30}]',
                    b'[{"cfgId": "9' + b"9" * 40 + b'"}]',
                    b'[{"cfgId": 1, "group": ["G"]}]',
                    b'[{"cfgId": 1, "dataId": "' + b"d" * 5_000 + b'"}]',
                    orjson.dumps([{"cfgId": NO_CONFIG_ID + i} for i in range(MAX_IDS + 1)]),
                )
            )
            if rng.random() < 0.2:
                body = b"[]"
                params[2] = ("policy", rng.choice(("MERGE", "x" * 3_000)))
            shown = body if len(body) <= 40 else body[:20] + b"...(%d bytes)" % len(body)
            label = f"clone with body {shown!r}, policy {params[2][1][:20]}"
            expect = Expect.REFUSE
        return Probe(
            kind=ProbeKind.CONFIG_CLONE,
            node=node,
            label=label,
            expect=expect,
            method="POST",
            path=CONFIGS_PATH,
            params=tuple(params),
            body=body,
            headers=(("Content-Type", "application/json"),),
        )

    # -------------------------------------------------------------- routes

    def _unknown_route(self, node: int) -> Probe:
        """A path no route takes (404) or a method its path does not serve (405), each in
        its API's error shape; or a server view: the core API's member list with an odd
        `keyword`, the answering member, its health, the console's server state, the health
        checker types, the actuator's health and metrics."""
        rng = self._rng
        choice = rng.randrange(5)
        if choice == 3:
            return self._log_level(node)
        if choice == 4:
            return self._core_ops_refused(node)
        if choice < 2:
            if choice == 0:
                prefix = rng.choice(UNROUTED_PREFIXES)
                segment = rng.choice(
                    (
                        f"nemesis-{self._unique()}",
                        "%ff%fe/%zz/..%2f..%2fetc",
                        "ü/名前/" + _value(rng, rng.randrange(1, 64)),
                        "x" * rng.randrange(1_000, 4_000),
                    )
                )
                method = rng.choice(("GET", "POST", "PUT", "DELETE", "PATCH"))
                path, label = prefix + segment, f"{method} {prefix}{segment[:40]}"
            else:
                method, path = rng.choice(UNSERVED_METHODS)
                label = f"{method} {path}, a method it does not serve"
            return Probe(
                kind=ProbeKind.UNKNOWN_ROUTE,
                node=node,
                label=label,
                expect=Expect.REFUSE,
                method=method,
                path=path,
            )
        view = rng.choice(SERVER_VIEWS)
        label = f"{view}, a server view"
        params: tuple[tuple[str, str], ...] = ()
        expect = Expect.ACCEPT
        if view == CORE_NODES:
            keyword = rng.choice(
                ("", "127.0.0.1", "名前ü", "%", _value(rng, rng.randrange(1, 4_000)))
            )
            label = f"the member list, keyword of {len(keyword)} chars"
            params = (("keyword", keyword),)
        elif view == V2_NAMESPACE_CONFIGS:
            namespace = rng.choice(("public", "", CLONE_TENANT))
            label = f"the configs of namespace {namespace!r}"
            params = (("namespaceId", namespace),)
        elif view == V2_PUBLISHERS:
            service = SERVICE_PREFIX + rng.choice(("0", "1", "名前", "a" * 200))
            label = f"who registered service {service[:40]!r}"
            params = (("serviceName", service), ("ephemeral", rng.choice(("true", "false"))))
            if rng.random() < 0.5:
                params += (("ip", rng.choice(("10.0.0.1", "::1", "not an ip", ""))),)
            expect = Expect.ANY  # a bad name or address is refused, a good one answered
        elif view == V2_CLIENT:
            client_id = rng.choice(("", "0_127.0.0.1_1", "名前", _value(rng, 300), "%00"))
            label = f"the 2.x client {client_id[:40]!r} (not held: refused)"
            params = (("clientId", client_id),)
            expect = Expect.REFUSE
        return Probe(
            kind=ProbeKind.UNKNOWN_ROUTE,
            node=node,
            label=label,
            expect=expect,
            path=view,
            params=params,
        )

    def _log_level(self, node: int) -> Probe:
        """Nacos's `PUT /operator/log`: a valid level for a logger nobody writes to, or a
        bad name or level (refused, nothing changed)."""
        rng = self._rng
        name, level = NEMESIS_LOGGER, rng.choice(("debug", "INFO", "Warn", "OFF", "trace"))
        expect = Expect.ACCEPT
        if rng.random() < 0.5:
            expect = Expect.REFUSE
            if rng.random() < 0.5:
                name = rng.choice(
                    ("", "naming-distro", "root", "naraft..x", "naraft." + "a" * 200, "名前")
                )
            else:
                level = rng.choice(("", "LOUD", "10", "debug\x00", _value(rng, 2_000)))
        return Probe(
            kind=ProbeKind.UNKNOWN_ROUTE,
            node=node,
            label=f"log level {level[:12]!r} for {name[:24]!r}",
            expect=expect,
            method="PUT",
            path=rng.choice(LOG_PATHS),
            params=(("logName", name), ("logLevel", level)),
        )

    def _core_ops_refused(self, node: int) -> Probe:
        """Nacos's `POST /v1/core/ops/raft` with what must be refused (4xx) without touching
        the cluster: an unknown command, a stranger or a malformed address as the target,
        bodies that are not a JSON object of strings. (The commands naraft does not run,
        such as doSnapshot, answer 501, which the answer contract counts as a server
        fault; `tests/e2e/test_leadership_transfer.py` checks them.)"""
        rng = self._rng
        body = rng.choice(
            (
                b'{"command": "becomeLeader", "value": "127.0.0.1:7848"}',
                b'{"command": "transferLeader", "value": "10.255.255.1:7848"}',
                b'{"command": "removePeer", "value": "' + b"9" * 5_000 + b'"}',
                b'{"command": "transferLeader", "value": ":"}',
                b'{"command": "transferLeader", "value": 7848}',
                b'["transferLeader"]',
                b"{not json",
                b'{"command": "' + _value(rng, 5_000).encode() + b'"}',
            )
        )
        shown = body if len(body) <= 60 else body[:40] + b"...(%d bytes)" % len(body)
        return Probe(
            kind=ProbeKind.UNKNOWN_ROUTE,
            node=node,
            label=f"core ops raft {shown!r}",
            expect=Expect.REFUSE,
            method="POST",
            path=CORE_OPS_RAFT_PATH,
            body=body,
            headers=(("Content-Type", "application/json"),),
        )

    # -------------------------------------------------------------- bodies and parameters

    def _oversized_body(self, node: int) -> Probe:
        rng = self._rng
        size = rng.choice((BODY_LIMIT + 1, 2 * BODY_LIMIT, 4 * BODY_LIMIT))
        chunked = rng.random() < 0.5
        if rng.random() < 0.5:
            key = f"{KEY_PREFIX}{self._unique()}"
            body = orjson.dumps({"value": _value(rng, size)})
            path, method = f"{KV_PATH}/{key}", "PUT"
        else:
            body = f"serviceName={self._service()}&ip=10.202.0.1&port=1&metadata=".encode()
            body += b"x" * size
            path, method = INSTANCE_PATH, "POST"
        how = "chunked" if chunked else "with a length"
        return Probe(
            kind=ProbeKind.OVERSIZED_BODY,
            node=node,
            label=f"{method} {path[:40]} body of {len(body)} bytes {how}",
            expect=Expect.REFUSE,
            method=method,
            path=path,
            body=body,
            chunked=chunked,
        )

    def _many_params(self, node: int) -> Probe:
        rng = self._rng
        count = rng.choice((10_000, 50_000, 100_000))
        if rng.random() < 0.5:  # in the body: a valid registration drowned in junk
            ip = f"10.203.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            port = rng.randrange(1, 65_536)
            service = self._service()
            junk = tuple((f"p{i}", "v") for i in range(count))
            form = (
                ("serviceName", service),
                ("ip", ip),
                ("port", str(port)),
                ("ephemeral", "false"),
                *junk,
            )
            ack = InstanceAck(
                service=service, ip=ip, port=port, cluster="DEFAULT", weight=1.0, metadata={}
            )
            return Probe(
                kind=ProbeKind.MANY_PARAMS,
                node=node,
                label=f"register with {count} more form parameters",
                expect=Expect.ANY,
                method="POST",
                path=INSTANCE_PATH,
                form=form,
                ack=ack,
            )
        # as many as fit in aiohttp's 8,190-byte request line (a longer one is malformed-http)
        service_name = self._service()
        params = (("serviceName", service_name), *((f"{i:x}", "") for i in range(1200)))
        return Probe(
            kind=ProbeKind.MANY_PARAMS,
            node=node,
            label=f"list {service_name} with {len(params)} query parameters",
            expect=Expect.ANY,
            method="GET",
            path=INSTANCE_LIST_PATH,
            params=params,
        )

    # -------------------------------------------------------------- raw sockets

    def _malformed_http(self, node: int) -> Probe:
        rng = self._rng
        head = b"Host: 127.0.0.1\r\n"
        register = b"POST " + INSTANCE_PATH.encode() + b" HTTP/1.1\r\n" + head
        form = b"serviceName=nemesis-raw&ip=10.204.0.1&port=%zz&ephemeral=false"
        utf8 = b"serviceName=%ff%fe&ip=10.204.0.2&port=1&ephemeral=false"
        label, data = rng.choice(
            (
                ("garbage request line", b"GARBAGE\r\n\r\n"),
                ("HTTP/9.9", b"GET / HTTP/9.9\r\n" + head + b"\r\n"),
                ("HTTP/0.9 style", b"GET /\r\n\r\n"),
                ("bytes 0xff in the method", b"G\xffT / HTTP/1.1\r\n" + head + b"\r\n"),
                ("absolute URL", b"GET http://evil.example/x HTTP/1.1\r\n" + head + b"\r\n"),
                ("HTTP/1.1 without Host", b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\n\r\n"),
                (
                    "header without a colon",
                    b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\n" + head + b"Bad Header\r\n\r\n",
                ),
                (
                    "NUL in a header",
                    b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\n" + head + b"X-A: a\x00b\r\n\r\n",
                ),
                (
                    "a 64 KiB header",
                    b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\n"
                    + head
                    + b"X-Big: "
                    + b"a" * 65536
                    + b"\r\n\r\n",
                ),
                (
                    "2,000 headers",
                    b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\n"
                    + head
                    + b"".join(b"X-%d: v\r\n" % i for i in range(2000))
                    + b"\r\n",
                ),
                (
                    "a 64 KiB URL",
                    b"GET /nacos/v1/ns/instance/list?serviceName="
                    + b"a" * 65536
                    + b" HTTP/1.1\r\n"
                    + head
                    + b"\r\n",
                ),
                (
                    "bad chunk size",
                    register + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                ),
                (
                    "a chunk size of 20 hex digits",
                    register + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nabc\r\n",
                ),
                (
                    "chunk without its CRLF",
                    register + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
                ),
                (
                    "length and chunked together",
                    register + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                ),
                ("negative length", register + b"Content-Length: -1\r\n\r\n"),
                ("a 30-digit length", register + b"Content-Length: " + b"9" * 30 + b"\r\n\r\nabc"),
                (
                    "two different lengths",
                    register + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                ),
                (
                    "bad percent-encoding in the query",
                    b"GET /nacos/v1/ns/instance/list?serviceName=%zz%E0%A4%A HTTP/1.1\r\n"
                    + head
                    + b"\r\n",
                ),
                (
                    "bad percent-encoding in the path",
                    b"GET /naraft/v1/kv/nemesis%ff%fe%zz HTTP/1.1\r\n" + head + b"\r\n",
                ),
                ("bad percent-encoding in a form", register + _form_head(form) + form),
                ("bad UTF-8 in a form", register + _form_head(utf8) + utf8),
                (
                    "gzip body that is not gzip",
                    register + b"Content-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
                ),
            )
        )
        return Probe(
            kind=ProbeKind.MALFORMED_HTTP,
            node=node,
            label=label,
            expect=Expect.ANY if label in TOLERATED_RAW else Expect.REFUSE,
            chunks=(data,),
        )

    def _slow_client(self, node: int) -> Probe:
        rng = self._rng
        key = f"{KEY_PREFIX}slow-{self._unique()}"
        head = f"PUT {KV_PATH}/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        body = orjson.dumps({"value": "never complete"})
        pause = rng.uniform(0.2, 0.6)
        steps = rng.randrange(5, 15)
        mode = rng.choice(("headers", "body", "silent", "held poll", "held poll, flooded"))
        if mode.startswith("held poll"):
            # a long poll the node holds out of aiohttp (a config that does not exist, so
            # the MD5 "" is current), then bytes while it waits: a few, or past the header
            # limit (the node must close it); abandoned either way
            data_id = f"nemesis-held-{self._unique()}"
            form = f"Listening-Configs={data_id}%02DEFAULT_GROUP%02%01".encode()
            poll = (
                (
                    f"POST {CONFIG_LISTENER_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Long-Pulling-Timeout: 30000\r\n"
                ).encode()
                + _form_head(form)
                + form
            )
            junk = b"x" * (24 << 10 if mode.endswith("flooded") else 7)
            chunks = (poll, *(junk,) * steps)
        elif mode == "headers":
            chunks = tuple(head[i : i + 3] for i in range(0, min(len(head), 3 * steps), 3))
        elif mode == "body":
            start = head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(
                body
            )
            chunks = (start, *(body[i : i + 1] for i in range(min(steps, len(body) - 1))))
        else:
            chunks = (b"",) * steps
        return Probe(
            kind=ProbeKind.SLOW_CLIENT,
            node=node,
            label=f"{mode} trickled over {len(chunks)} x {pause:.2f} s, then abandoned",
            expect=Expect.REFUSE,
            chunks=chunks,
            pause=pause,
            abandon=True,
        )

    # -------------------------------------------------------------- auth

    def _peer_forged(self, node: int) -> Probe:
        """An outsider on the peer routes: a Raft stream upgrade or a Raft batch (an append
        that would overwrite the log) that is unsigned, carries a made-up signature, or is
        signed at a time outside the window. Every one must be refused before anything is
        read from it (403; with peer TLS, 403 for the missing peer certificate)."""
        rng = self._rng
        forgery = rng.choice(("unsigned", "a made-up signature", "a stale time"))
        headers: dict[str, str] = {signing.SENDER_HEADER: "nemesis:1"}
        if forgery != "unsigned":
            time_ms = 1 if forgery == "a stale time" else signing.wall_clock_ms()
            headers |= {
                signing.CLUSTER_HEADER: rng.randbytes(8).hex(),
                signing.RECIPIENT_HEADER: "nemesis:2",
                signing.TIME_HEADER: str(time_ms),
                signing.NONCE_HEADER: f"{rng.randbytes(8).hex()}-1",
                signing.SIGNATURE_HEADER: rng.randbytes(32).hex(),
            }
        if rng.random() < 0.5:
            key = base64.b64encode(rng.randbytes(16)).decode()
            headers |= {
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": key,
            }
            return Probe(
                kind=ProbeKind.PEER_FORGED, node=node, expect=Expect.REFUSE,
                label=f"a Raft stream upgrade, {forgery}", path=STREAM_PATH,
                params=(("lane", rng.choice(("control", "bulk"))),),
                headers=tuple(headers.items()),
            )  # fmt: skip
        entry = Entry(term=Term(2**40), index=Index(1), command=rng.randbytes(64))
        append = AppendEntries(
            term=Term(2**40), prev_log_index=Index(0), prev_log_term=Term(0),
            leader_commit=Index(1), entries=(entry,),
        )  # fmt: skip
        body = encode_batch([Envelope(NodeId("nemesis:1"), NodeId("nemesis:2"), append)])
        headers["Content-Type"] = "application/json"
        return Probe(
            kind=ProbeKind.PEER_FORGED, node=node, expect=Expect.REFUSE,
            label=f"a Raft batch, {forgery}", method="POST", path=MESSAGES_PATH, body=body,
            headers=tuple(headers.items()),
        )  # fmt: skip

    def _forged_auth(self, node: int) -> Probe:
        """A registration carrying a credential that must never count: a token under
        Nacos's default key or a random one, unsigned (`alg: none`), expired, mangled or
        huge; a client-sent identity header; a server's User-Agent. A node with auth on
        refuses them all; one with auth off ignores the token (so either answer holds),
        but refuses the identity header whatever its mode (docs/auth.md)."""
        rng = self._rng
        service = self._service()
        port = rng.randrange(1, 65_536)
        later = 4_000_000_000  # 2096: far from expiring
        hs256 = {"alg": "HS256", "typ": "JWT"}
        nacos = {"sub": "nacos", "exp": later}
        tokens: tuple[tuple[str, str | None], ...] = (
            ("Nacos's default key", _jwt(hs256, nacos, NACOS_DEFAULT_TOKEN_KEY)),
            ("a random key", _jwt(hs256, nacos, rng.randbytes(32))),
            ("alg none", _jwt({"alg": "none"}, nacos, None)),
            ("expired", _jwt(hs256, {"sub": "nacos", "exp": 1}, rng.randbytes(32))),
            ("a mangled token", "eyJ" + _value(rng, rng.randrange(1, 200))),
            ("a 6,000-character token", _value(rng, 6000)),
            ("no token", None),
        )
        name, token = rng.choice(tokens)
        params: tuple[tuple[str, str], ...] = ()
        headers: tuple[tuple[str, str], ...] = ()
        if token is not None and rng.random() < 0.5:
            params = (("accessToken", token),)
        elif token is not None:
            headers = (("Authorization", f"Bearer {token}"),)
        if rng.random() < 0.3:
            name, headers = (
                f"{name}, a server's User-Agent",
                (*headers, ("User-Agent", "Nacos-Server")),
            )
        identity = rng.random() < 0.3
        if identity:
            name, headers = (
                f"{name}, an identity header",
                (*headers, ("X-Naraft-Identity", "nacos")),
            )
        fields = (
            ("serviceName", service),
            ("ip", "10.202.0.1"),
            ("port", str(port)),
            ("ephemeral", "false"),
        )
        ack = InstanceAck(
            service=service, ip="10.202.0.1", port=port, cluster="DEFAULT", weight=1.0,
            metadata={},
        )  # fmt: skip
        return Probe(
            kind=ProbeKind.FORGED_AUTH,
            node=node,
            label=f"register {service} with {name}",
            expect=Expect.REFUSE if identity else Expect.ANY,
            method="POST",
            path=INSTANCE_PATH,
            params=params,
            form=fields,
            headers=headers,
            ack=None if identity else ack,
        )


def _jwt(header: Mapping[str, object], claims: Mapping[str, object], key: bytes | None) -> str:
    """A JWT signed HS256 with `key` (None: unsigned), built by hand so that any header
    (`alg: none`) can be sent."""

    def part(data: Mapping[str, object]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    head = f"{part(header)}.{part(claims)}"
    if key is None:
        return f"{head}."
    mac = hmac.new(key, head.encode(), hashlib.sha256).digest()
    return f"{head}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


NACOS_DEFAULT_TOKEN_KEY: Final = (
    b"SecretKey012345678901234567890123456789012345678901234567890123456789"
)
"""The signing key Nacos shipped in its default configuration (a token under it is forged)."""


def _form_head(form: bytes) -> bytes:
    return b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % len(
        form
    )


# ------------------------------------------------------------------ sending


@dataclass(slots=True)
class InputStats:
    """What the nemesis sent and what came back; `acked` is checked after healing."""

    sent: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    acked: list[Ack] = field(default_factory=list)
    switch_log: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    uncertain: set[tuple[str, str, int, str]] = field(default_factory=set)  # instances
    contract: list[str] = field(default_factory=list)  # answers that break their contract

    def note(self, probe: Probe, status: str) -> None:
        kind = str(probe.kind)
        self.sent[kind] += 1
        self.statuses.setdefault(kind, Counter())[status] += 1
        outcome = _outcome(status)
        if isinstance(probe.ack, SwitchAck):
            self.switch_log.setdefault(probe.ack.entry, []).append((probe.ack.value, outcome))
        if isinstance(probe.ack, InstanceAck) and outcome == "unknown":
            ack = probe.ack
            self.uncertain.add((ack.service, ack.ip, ack.port, ack.cluster))
        if probe.ack is not None and outcome == "acked":
            self.acked.append(probe.ack)
        problem = contract_problem(probe, status)
        if problem is not None:
            self.contract.append(problem)

    def summary(self, kinds: Iterable[ProbeKind]) -> dict[str, object]:
        return {
            "kinds": [str(k) for k in kinds],
            "sent": dict(sorted(self.sent.items())),
            "statuses": {k: dict(sorted(v.items())) for k, v in sorted(self.statuses.items())},
            "acked": dict(Counter(type(a).__name__ for a in self.acked)),
            "contract_problems": self.contract[:MAX_PROBLEMS],
        }


def _outcome(status: str) -> str:
    """The write's outcome by `naraft.client`'s one rule, from the status label alone: the
    nemesis keeps no bodies, so a 5xx that says "not-applied" counts as unknown (which only
    makes the check more lenient, never wrong)."""
    if status in ("node-down", "refused-connect"):
        outcome = classify_failure(sent=False)
    elif status.isdigit():
        outcome = classify_write(int(status), None)
    else:  # a timeout or a reset: the request may have been sent
        outcome = classify_failure(sent=True)
    return OUTCOME_LABELS[outcome]


OUTCOME_LABELS: Final = {
    WriteOutcome.APPLIED: "acked",
    WriteOutcome.NOT_APPLIED: "refused",
    WriteOutcome.UNKNOWN: "unknown",
}


LANE_PAUSES: Final = ((0.1, 0.5), (0.1, 0.5), (0.2, 1.0), (0.2, 1.0))
"""Seconds between two requests of a lane (API, raw, slow, gRPC): about 3 API requests a
second, a third of them large, which on 2 shared cores costs the workload about a third of
its operations."""

TRANSIENT: Final = frozenset({"503", "507", "timeout", "reset", "node-down", "refused-connect"})


def contract_problem(probe: Probe, status: str) -> str | None:
    """What is wrong with `status` as an answer to `probe`, or None."""
    if probe.grpc is not None:
        if status in probe.grpc.answers or status in grpc_inputs.TRANSIENT:
            return None
        wanted = " or ".join(sorted(probe.grpc.answers))
        return f"{probe.kind}: {probe.label}: answered {status}, not {wanted}"
    if status.startswith("5") and status not in TRANSIENT:
        return f"{probe.kind}: {probe.label}: answered {status}"
    if probe.expect is Expect.REFUSE and (status.startswith("2") or status == "101"):
        return f"{probe.kind}: {probe.label}: invalid input acknowledged ({status})"
    if probe.expect is Expect.ACCEPT and status.startswith("4"):
        return f"{probe.kind}: {probe.label}: valid input refused ({status})"
    return None


class InputNemesis:
    """Sends probes to random nodes until stopped: one lane of HTTP probes, one of raw
    malformed requests, one of slow clients (each only if one of its kinds is enabled)."""

    def __init__(
        self,
        cluster: ChaosCluster,
        rng: random.Random,
        kinds: Sequence[ProbeKind],
        log_path: Path | None = None,
    ) -> None:
        self._cluster = cluster
        self.kinds = tuple(kinds)
        self.stats = InputStats()
        self._log_path = log_path
        self._lines: list[str] = []
        lanes = (
            [k for k in self.kinds if k not in RAW_KINDS | SLOW_KINDS | GRPC_KINDS],
            [k for k in self.kinds if k in RAW_KINDS],
            [k for k in self.kinds if k in SLOW_KINDS],
            [k for k in self.kinds if k in GRPC_KINDS - SLOW_KINDS],
        )
        self._lanes = [
            (ProbeFactory(random.Random(rng.getrandbits(64)), lane, len(cluster.nodes)), pace)
            for lane, pace in zip(lanes, LANE_PAUSES, strict=True)
            if lane
        ]
        self._pace_rng = random.Random(rng.getrandbits(64))
        self._started = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                session._retry_connection = False  # one request is one request
                async with asyncio.TaskGroup() as tasks:
                    for i, (factory, pace) in enumerate(self._lanes):
                        tasks.create_task(
                            self._lane(session, factory, pace, stop), name=f"input-nemesis-{i}"
                        )
        finally:
            if self._log_path is not None:
                self._log_path.write_text("".join(self._lines))

    async def _lane(
        self,
        session: aiohttp.ClientSession,
        factory: ProbeFactory,
        pace: tuple[float, float],
        stop: asyncio.Event,
    ) -> None:
        while not stop.is_set():
            probe = factory.next()
            node = self._cluster.nodes[probe.node]
            started = time.monotonic()
            if not node.serving:
                status = "node-down"
            elif probe.grpc is not None:
                status = await grpc_inputs.exchange(node.grpc_address, probe.grpc, stop)
            elif probe.chunks:
                status = await raw_exchange(node, probe, stop)
            else:
                status = await http_exchange(session, node, probe)
            self.stats.note(probe, status)
            self._lines.append(
                f"{started - self._started:.3f} {probe.kind} {node.id} {status} "
                f"{time.monotonic() - started:.2f}s {probe.label}\n"
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._pace_rng.uniform(*pace)):
                    await stop.wait()

    def summary(self) -> dict[str, object]:
        return self.stats.summary(self.kinds)


async def http_exchange(session: aiohttp.ClientSession, node: ChaosNode, probe: Probe) -> str:
    """Send an HTTP probe; its status, or `timeout`/`reset`/`refused-connect`."""
    data: Any
    if probe.form is not None:
        data = aiohttp.FormData(list(probe.form), charset="utf-8")
    elif probe.chunked and probe.body is not None:
        data = _chunks(probe.body)
    elif probe.body is not None:
        data = io.BytesIO(probe.body)  # aiohttp warns on large raw bytes; same Content-Length
    else:
        data = None
    try:
        async with session.request(
            probe.method,
            f"{node.url}{probe.path}",
            params=list(probe.params) or None,
            data=data,
            headers=dict(probe.headers) or None,
        ) as answer:
            await answer.read()
            return str(answer.status)
    except aiohttp.ClientConnectorError:
        return "refused-connect"
    except TimeoutError:
        return "timeout"
    except (aiohttp.ClientError, OSError):
        return "reset"


async def _chunks(body: bytes) -> Any:
    for start in range(0, len(body), 64 << 10):
        yield body[start : start + (64 << 10)]


async def raw_exchange(node: ChaosNode, probe: Probe, stop: asyncio.Event) -> str:
    """Send `probe.chunks` over a raw socket, `probe.pause` apart; the answer's status, or
    `closed` (the server hung up without one), `abandoned`, `server-closed` (it hung up on a
    slow client first), `timeout`, `refused-connect`."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.listen_port)
    except OSError:
        return "refused-connect"
    try:
        for i, chunk in enumerate(probe.chunks):
            if i and probe.pause:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(probe.pause):
                        await stop.wait()
            if reader.at_eof():
                return "server-closed"
            if chunk:
                writer.write(chunk)
                await writer.drain()
        if probe.abandon:
            return "server-closed" if reader.at_eof() else "abandoned"
        async with asyncio.timeout(RAW_TIMEOUT_SECONDS):
            first = await reader.readline()
        if not first:
            return "closed"
        parts = first.split()
        return parts[1].decode(errors="replace") if len(parts) > 1 else "garbled"
    except TimeoutError:
        return "timeout"
    except OSError:
        return "reset"
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1):
                await writer.wait_closed()


# ------------------------------------------------------------------ after healing


async def check(cluster: ChaosCluster, stats: InputStats) -> list[str]:
    """Every acked kv write and registration on every node, every switch at its last acked
    value, the same switch document everywhere, every gRPC port serving (when gRPC cases
    were sent); the problems found (empty: all is well)."""
    problems: list[str] = []
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for ack in stats.acked:
            if isinstance(ack, KvAck):
                problems += await _check_kv(session, cluster.nodes, ack)
        instances = [a for a in stats.acked if isinstance(a, InstanceAck)]
        for service in sorted({a.service for a in instances}):
            wanted = [a for a in instances if a.service == service]
            problems += await _check_service(
                session, cluster.nodes, service, wanted, frozenset(stats.uncertain)
            )
        problems += await _check_switches(session, cluster.nodes, stats.switch_log)
        configs = {a.data_id: a for a in stats.acked if isinstance(a, ConfigAck)}
        if configs:
            expected = {data_id: ack.md5 for data_id, ack in configs.items()}
            for node in cluster.nodes:
                differing = await local_md5s(session, node, expected)
                if differing is None:
                    problems.append(f"{node.id} did not answer the acked-config probe")
                    continue
                problems += [
                    f"acked config {d[:40]} ({configs[d].length} bytes) missing on {node.id}"
                    for d in differing
                ]
    if any(kind in stats.sent for kind in GRPC_KINDS):
        for node in cluster.nodes:  # after all it was sent, each gRPC port still serves
            why = await grpc_inputs.healthy(node.grpc_address)
            if why is not None:
                problems.append(f"{node.id} gRPC: {why}")
    return problems


async def _check_kv(
    session: aiohttp.ClientSession, nodes: Sequence[ChaosNode], ack: KvAck
) -> list[str]:
    found = []
    for node in nodes:
        async with session.get(
            f"{node.url}{KV_PATH}/{ack.key}", params={"consistency": "local"}
        ) as answer:
            body = await answer.read()
        value = _loads(body).get("value") if answer.status == 200 else None
        if not isinstance(value, str) or _digest(value) != ack.sha256:
            got = f"HTTP {answer.status}" if value is None else f"{len(str(value))} other bytes"
            found.append(f"acked {ack.key} ({ack.length} bytes) missing on {node.id}: {got}")
    return found


def _instance_id(ip: str, port: int, cluster: str) -> tuple[str, int, str]:
    return ip, port, cluster


async def _check_service(
    session: aiohttp.ClientSession,
    nodes: Sequence[ChaosNode],
    service: str,
    wanted: Sequence[InstanceAck],
    uncertain: frozenset[tuple[str, str, int, str]] = frozenset(),
) -> list[str]:
    found = []
    latest: dict[tuple[str, int, str], InstanceAck] = {}
    for ack in wanted:  # a later acked registration of the same instance replaces it
        latest[_instance_id(ack.ip, ack.port, ack.cluster)] = ack
    for node in nodes:
        async with session.get(
            f"{node.url}{INSTANCE_LIST_PATH}",
            params={"serviceName": service, "healthyOnly": "false"},
        ) as answer:
            body = await answer.read()
        if answer.status != 200:
            found.append(f"{service} not listed on {node.id}: HTTP {answer.status}")
            continue
        hosts = _loads(body).get("hosts", [])
        listed = {
            _instance_id(str(h.get("ip")), int(h.get("port", 0)), str(h.get("clusterName"))): h
            for h in hosts
            if isinstance(h, dict)
        }
        for ident, ack in latest.items():
            host = listed.get(ident)
            if host is None:
                found.append(f"acked {service} {ack.ip[:40]}:{ack.port} missing on {node.id}")
            elif (service, *ident) in uncertain:
                continue  # a registration of unknown outcome may have changed it since
            elif float(host.get("weight", -1)) != ack.weight or host.get("metadata") != dict(
                ack.metadata
            ):
                found.append(f"acked {service} {ack.ip[:40]}:{ack.port} differs on {node.id}")
    return found


async def _check_switches(
    session: aiohttp.ClientSession,
    nodes: Sequence[ChaosNode],
    log: Mapping[str, list[tuple[str, str]]],
) -> list[str]:
    found = []
    documents = []
    for node in nodes:
        async with session.get(f"{node.url}{SWITCHES_PATH}") as answer:
            documents.append(_loads(await answer.read()) if answer.status == 200 else None)
    if any(doc is None for doc in documents) or any(doc != documents[0] for doc in documents):
        differing = sorted(
            {k for d in documents if d for k in d if d.get(k) != (documents[0] or {}).get(k)}
        )
        found.append(f"the switch documents differ between nodes: {differing[:5]}")
    document = documents[0] or {}
    for entry, attempts in sorted(log.items()):
        acked = [value for value, outcome in attempts if outcome == "acked"]
        if not acked:
            continue
        # the last acknowledged value, or one whose outcome is unknown (it may commit late)
        possible = [acked[-1], *(value for value, outcome in attempts if outcome == "unknown")]
        try:
            expected = [_switch_field(entry, value) for value in possible]
        except (NaraftError, ValueError):
            continue  # this build's parser refuses what an earlier answer acknowledged
        held = document.get(SWITCH_FIELDS[entry])
        if held not in expected:
            value = acked[-1]
            shown = _shown(value)
            found.append(f"switch {entry}: acked {shown!r}, the nodes hold {str(held)[:60]}")
    return found


def _switch_field(entry: str, value: str) -> object:
    """The field of the switch document that `entry=value` sets, as GET shows it."""
    return switches_view(with_entry(Switches(), entry, value))[SWITCH_FIELDS[entry]]


def _loads(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
