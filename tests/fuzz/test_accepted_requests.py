"""Whatever the API accepts applies and encodes on every replica; whatever it refuses is a 400
naming the field, before anything is proposed.

Hypothesis sends sequences of requests to every endpoint (the Nacos v1 naming API: instance,
beat, health, service, switches, namespaces, their reads; and the naraft kv API) through the
real handlers, parameter parsing and validation, in process. Parameters are drawn from valid
shapes, boundary and huge numbers (Java int and long edges, 2^63..2^64, 5,000 digits, NaN,
infinities), unicode text and the maximum sizes. A proposal goes through the real codec and
the real `NodeStateMachine` (no server, no Raft). For each request:

- never a 500, never an entry rejected on apply (a fault);
- a 400 with nothing proposed names one of the parameters (a validation refusal);
- after a write, the reads that encode the state for clients (instance list, service,
  statuses, switches, namespaces, kv) answer with JSON.

After each sequence a second replica applies the same log from scratch, and a restarted one
decodes the stored datums: both hold exactly the first replica's state and encode it. The
same sequences under a small replicated quota may also be refused for the quota (507 on the
kv API, 503 on the Nacos API, both saying so), and the replicas still agree.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator, Mapping
from typing import Any, Final

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from naraft.api import make_app
from naraft.api.admin import NODE, admin_routes
from naraft.machine import NodeStateMachine, encode_set_quota
from naraft.naming.feed import ChangeFeed
from naraft.naming.health import BeatTable
from naraft.naming.keys import InstanceKey
from naraft.naming.push import PushTargets
from naraft.naming.service import NamingService
from naraft.naming.state import NamingState
from naraft.naming.switches import SWITCH_ENTRIES
from naraft.naming.validate import (
    MAX_CLUSTER_NAME_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_VALUE_CHARS,
    MAX_NAMESPACE_ID_CHARS,
    MAX_NAMESPACE_NAME_CHARS,
    MAX_SELECTOR_CHARS,
    MAX_SERVICE_NAME_CHARS,
)
from naraft.raft import Entry, Index, Term
from naraft.state.datums import DatumTable
from naraft.state.kv import MAX_KEY_BYTES, read_value
from naraft.state.rejections import EntryRejected, RejectionKind

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
T0 = 1_700_000_000_000
QUERY_LIMIT: Final = 3_000  # longer parameter sets go in a form body, as the servlet reads both

# ------------------------------------------------------------------------------ replica


class Replica:
    """The node as the API sees it: each proposal is an entry the real machine applies."""

    def __init__(self) -> None:
        self.datums = DatumTable()
        self.naming_state = NamingState(self.datums, ChangeFeed())
        self.machine = NodeStateMachine(self.datums, self.naming_state)
        self.log: list[bytes] = []
        self.results: list[object] = []

    async def propose(self, command: bytes) -> object:
        self.log.append(command)
        result = self.machine.apply(Entry(Term(1), Index(len(self.log)), command))
        self.machine.drain_changes()
        self.results.append(result)
        return result

    async def read_barrier(self) -> None:
        return None

    async def local_read_point(self) -> None:
        return None

    # RaftNodeView, the parts the kv routes use
    @property
    def members(self) -> tuple[str, ...]:
        return ()

    def kv_get(self, key: str) -> Any:
        return read_value(self.datums, key)

    def metrics_text(self) -> bytes:
        return b""

    def extra_state(self) -> dict[str, object]:
        return self.machine.view()

    def quota_refusal(self) -> str | None:
        return self.machine.quota_refusal()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def now_ms(self) -> int:
        self.now += 1
        return self.now


class Beats:
    def __init__(self) -> None:
        self.table = BeatTable()

    async def record_beat(self, key: InstanceKey, beat_at_ms: int) -> None:
        self.table.beat(key, beat_at_ms)


class Harness:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: TestClient[web.Request, web.Application],
        replica: Replica,
    ) -> None:
        self.loop = loop
        self.client = client
        self.replica = replica

    def reset(self, quota_bytes: int = 0) -> None:
        """An empty state; with `quota_bytes`, that quota replicated by the first entry."""
        self.replica.datums.replace_all({})
        self.replica.datums.drain_changes()
        self.replica.log.clear()
        self.replica.results.clear()
        if quota_bytes:
            self.loop.run_until_complete(self.replica.propose(encode_set_quota(quota_bytes)))

    def run(self, request: Request) -> tuple[int, str]:
        return self.loop.run_until_complete(self._send(request))

    async def _send(self, request: Request) -> tuple[int, str]:
        kwargs: dict[str, Any] = {}
        if request.body is not None:
            kwargs["data"] = io.BytesIO(request.body)
        elif request.params is not None:
            size = sum(len(k) + len(v) for k, v in request.params.items())
            if request.form or size > QUERY_LIMIT:
                kwargs["data"] = dict(request.params)
            else:
                kwargs["params"] = dict(request.params)
        async with self.client.request(request.method, request.path, **kwargs) as answer:
            return answer.status, await answer.text()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    replica = Replica()
    naming = NamingService(
        replica.naming_state,
        replica,
        Clock(),
        Beats(),
        PushTargets(),
        guard=replica.machine,
    )
    app = make_app(naming, extra_routes=admin_routes())
    app[NODE] = replica  # type: ignore[assignment]
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())
    try:
        yield Harness(loop=loop, client=client, replica=replica)
    finally:
        loop.run_until_complete(client.close())
        loop.close()


# ----------------------------------------------------------------------------- strategies

unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
numbers = st.one_of(
    st.integers(min_value=-5, max_value=70_000).map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(
        [
            str(2**31 - 1),
            str(2**31),
            str(2**63 - 1),
            str(2**63),
            str(2**64 - 1),
            str(2**64),
            "1000000000000000000000000000000",
            "9" * 5000,
            "1e400",
            "-1e400",
            "nan",
            "inf",
            "-inf",
            "1e-400",
            "0.5",
            "10000",
            "10000.000001",
            "65535",
            "65536",
            "0",
            "-0",
            "  7 ",
            "0x1F",
            "1_000",
            "",
            "\uff11\uff12",  # fullwidth digits: Python reads them as 12
        ]
    ),  # fmt: skip
    st.floats().map(repr),
    unicode_text,
)
flags = st.sampled_from(["true", "false", "TRUE", "False", "yes", "", " true "]) | unicode_text


def names(pattern: str, limit: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.from_regex(pattern, fullmatch=True).filter(lambda s: len(s) <= 40),
        st.sampled_from(["a" * limit, "a" * (limit + 1), "", " "]),
        unicode_text,
    )


services = st.one_of(
    st.sampled_from(["svc", "orders", "g1@@svc", "@@x", "a@@b@@c"]),
    names(r"[0-9a-zA-Z@.:_-]{1,20}", MAX_SERVICE_NAME_CHARS),
)
groups = st.sampled_from(["DEFAULT_GROUP", "g1"]) | names(r"[0-9a-zA-Z.:_-]{1,12}", 128)
namespace_ids = st.sampled_from(["public", "ns-1", "ns_2"]) | names(
    r"[\w-]{1,12}", MAX_NAMESPACE_ID_CHARS
)
clusters = st.sampled_from(["DEFAULT", "c1"]) | names(r"[0-9a-zA-Z-]{1,12}", MAX_CLUSTER_NAME_CHARS)
ips = st.one_of(
    st.sampled_from(["10.0.0.1", "10.0.0.2", "::1", "host-1", "a" * 253, "a" * 254, "1.2.3"]),
    st.ip_addresses().map(str),
    unicode_text,
)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | unicode_text,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(unicode_text, children, max_size=3),
    max_leaves=8,
)


def _json(value: object) -> str:
    """JSON text (Python's encoder: integers of any size, as a client may send)."""
    return json.dumps(value, ensure_ascii=False)


metadata = st.one_of(
    st.dictionaries(unicode_text, json_values, max_size=4).map(_json),
    st.dictionaries(st.from_regex(r"[a-z.]{1,12}", fullmatch=True), numbers, max_size=3).map(
        lambda d: ",".join(f"{k}={v}" for k, v in d.items())
    ),
    st.sampled_from(
        [
            _json({f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES)}),
            _json({f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES + 1)}),
            _json({"k" * MAX_METADATA_KEY_CHARS: "v" * MAX_METADATA_VALUE_CHARS}),
            _json({"k": "v" * (MAX_METADATA_VALUE_CHARS + 1)}),
            _json({"preserved.heart.beat.interval": str(2**64)}),
            _json({"preserved.heart.beat.timeout": "9" * 400, "preserved.ip.delete.timeout": "-1"}),
            '{"a": 1e400}',
            "{nope",
            "[]",
        ]
    ),
    unicode_text,
)
selectors = st.one_of(
    st.builds(
        lambda kind, expression: _json({"type": kind, "expression": expression}),
        st.sampled_from(["none", "label", "other", 5]),
        unicode_text | st.integers() | st.none(),
    ),
    st.sampled_from(
        [
            _json({"type": "label", "expression": "e" * (MAX_SELECTOR_CHARS - 40)}),
            _json({"type": "label", "expression": "e" * MAX_SELECTOR_CHARS}),
        ]
    ),
    unicode_text,
)
beats = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "ip": ips | st.integers(),
            "port": st.integers(min_value=-(2**64), max_value=2**64) | numbers,
            "weight": st.floats() | st.integers(min_value=-(2**64), max_value=2**64),
            "cluster": clusters,
            "serviceName": services,
            "metadata": st.dictionaries(unicode_text, json_values, max_size=3),
            "ephemeral": st.booleans() | unicode_text,
        },
    ).map(_json),
    unicode_text,
)
switch_values = st.one_of(
    numbers,
    flags,
    st.sampled_from(["UP", "down", "WRITE_ONLY", "nope", "1.1.1.1:8848,2.2.2.2:8848"]),
    st.lists(st.sampled_from(["1.1.1.1:1", "x" * 262]), max_size=70).map(",".join),
)
switch_entries = st.sampled_from([*SWITCH_ENTRIES, "nope", ""])
texts = unicode_text | st.sampled_from(
    ["n" * MAX_NAMESPACE_NAME_CHARS, "d" * (MAX_DESCRIPTION_CHARS + 1), "bad@name"]
)

INSTANCE_PARAMS: Final[Mapping[str, st.SearchStrategy[str]]] = {
    "serviceName": services,
    "groupName": groups,
    "namespaceId": namespace_ids,
    "clusterName": clusters,
    "ip": ips,
    "port": numbers,
    "weight": numbers,
    "enabled": flags,
    "healthy": flags,
    "ephemeral": flags,
    "metadata": metadata,
}
SERVICE_PARAMS: Final[Mapping[str, st.SearchStrategy[str]]] = {
    "serviceName": services,
    "groupName": groups,
    "namespaceId": namespace_ids,
    "protectThreshold": numbers,
    "metadata": metadata,
    "selector": selectors,
}
NS = "/nacos/v1/ns"
ENDPOINTS: Final[tuple[tuple[str, str, Mapping[str, st.SearchStrategy[str]]], ...]] = (
    *((m, f"{NS}/instance", INSTANCE_PARAMS) for m in ("POST", "PUT", "PATCH", "DELETE", "GET")),
    ("PUT", f"{NS}/instance/beat", {**INSTANCE_PARAMS, "beat": beats}),
    ("PUT", f"{NS}/health/instance", INSTANCE_PARAMS),
    (
        "GET",
        f"{NS}/instance/list",
        {
            **INSTANCE_PARAMS,
            "clusters": clusters,
            "healthyOnly": flags,
            "udpPort": numbers,
            "clientIP": ips,
        },
    ),  # fmt: skip
    ("GET", f"{NS}/instance/statuses", {"key": services | namespace_ids}),
    *((m, f"{NS}/service", SERVICE_PARAMS) for m in ("POST", "PUT", "DELETE", "GET")),
    ("GET", f"{NS}/service/list", {**SERVICE_PARAMS, "pageNo": numbers, "pageSize": numbers}),
    ("GET", f"{NS}/service/names", {"namespaceId": namespace_ids, "expr": unicode_text}),
    (
        "GET",
        f"{NS}/service/subscribers",
        {**SERVICE_PARAMS, "pageNo": numbers, "pageSize": numbers},
    ),
    (
        "PUT",
        f"{NS}/operator/switches",
        {"entry": switch_entries, "value": switch_values, "debug": flags},
    ),  # fmt: skip
    (
        "POST",
        "/nacos/v1/console/namespaces",
        {"customNamespaceId": namespace_ids, "namespaceName": texts, "namespaceDesc": texts},
    ),
    (
        "PUT",
        "/nacos/v1/console/namespaces",
        {"namespace": namespace_ids, "namespaceShowName": texts, "namespaceDesc": texts},
    ),
    ("DELETE", "/nacos/v1/console/namespaces", {"namespaceId": namespace_ids}),
)
READS: Final = (
    f"{NS}/instance/list",
    f"{NS}/service",
    f"{NS}/instance/statuses",
    f"{NS}/operator/switches",
    "/nacos/v1/console/namespaces",
    f"{NS}/service/list",
)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:100]}...({len(text)} chars)"


class Request:
    """One HTTP request (a plain class: Hypothesis prints it by its short repr)."""

    def __init__(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        form: bool = False,
        known: frozenset[str] = frozenset(),  # every parameter the endpoint reads
    ) -> None:
        self.method = method
        self.path = path
        self.params = params
        self.body = body
        self.form = form
        self.known = known

    def __repr__(self) -> str:
        params = {k: _short(v) for k, v in (self.params or {}).items()}
        body = None if self.body is None else _short(self.body)
        return f"Request({self.method} {_short(self.path)} params={params} body={body})"

    @property
    def fields(self) -> set[str]:
        return {*(self.params or ()), *self.known, "parameters"}


@st.composite
def nacos_requests(draw: st.DrawFn) -> Request:
    method, path, spec = draw(st.sampled_from(ENDPOINTS))
    chosen = draw(st.sets(st.sampled_from(sorted(spec)), min_size=len(spec) // 2))
    params = {name: draw(spec[name]) for name in sorted(chosen)}
    return Request(method, path, params=params, form=draw(st.booleans()), known=frozenset(spec))


kv_keys = st.one_of(
    st.from_regex(r"[a-z0-9/]{1,12}", fullmatch=True),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#%"), min_size=1,
            max_size=16),
    st.sampled_from(["k" * MAX_KEY_BYTES, "k" * (MAX_KEY_BYTES + 1), "é" * (MAX_KEY_BYTES // 2)]),
)  # fmt: skip
kv_bodies = st.one_of(
    st.fixed_dictionaries(
        {"value": unicode_text | st.sampled_from([1 << 20, (1 << 20) + 1]).map(lambda n: "v" * n)},
        optional={"prev": unicode_text | st.none(), "other": st.integers()},
    ).map(lambda body: _json(body).encode()),
    json_values.map(lambda body: _json(body).encode()),
    st.binary(max_size=20),
)


@st.composite
def kv_requests(draw: st.DrawFn) -> Request:
    key = draw(kv_keys)
    path = f"/naraft/v1/kv/{key}"
    if draw(st.booleans()):
        return Request("DELETE", path)
    return Request("PUT", path, body=draw(kv_bodies))


requests = st.lists(nacos_requests() | kv_requests(), min_size=1, max_size=6)


# ----------------------------------------------------------------------------- the property


def _check_reads(harness: Harness, request: Request) -> None:
    """The answers that encode the state for clients still encode, whatever was written."""
    params = {
        k: v for k, v in (request.params or {}).items()
        if k in ("serviceName", "groupName", "namespaceId") and len(v) < 600
    }  # fmt: skip
    params.setdefault("serviceName", "svc")
    for path in READS:
        query = dict(params)
        if path.endswith("statuses"):
            query = {"key": f"{params.get('namespaceId') or 'public'}##DEFAULT_GROUP@@svc"}
        if path.endswith("service/list"):
            query.update(pageNo="1", pageSize="100")
        status, text = harness.run(Request("GET", path, params=query))
        assert status in (200, 400, 404), (path, status, text)
        if status == 200:
            orjson.loads(text)  # every read answers JSON
    if request.path.startswith("/naraft/v1/kv/") and request.method == "PUT":
        status, text = harness.run(Request("GET", request.path + "?consistency=local"))
        assert status in (200, 400, 404), text


def _check_answer(
    harness: Harness, request: Request, status: int, text: str, proposed: bool
) -> None:
    assert status != 500, f"{request}: 500 {text}"
    if status in (503, 507):  # the quota (507 on the kv API, 503 on the Nacos API)
        assert "quota" in text, f"{request}: {status} {text}"
        return
    assert status in (200, 400, 404, 409, 413), f"{request}: {status} {text}"
    faults = [
        r
        for r in harness.replica.results
        if isinstance(r, EntryRejected) and r.kind is not RejectionKind.QUOTA
    ]
    assert not faults, f"{request}: rejected on apply: {faults}"
    if status == 400 and not proposed:
        if request.body is not None or request.path.startswith("/naraft/v1/kv/"):
            field = orjson.loads(text).get("field")
            assert isinstance(field, str), text
            assert field, text
        else:
            assert any(name in text for name in request.fields), f"{request}: {text}"


def _check_replicas(harness: Harness) -> None:
    """A follower applying the same log, and a restarted node decoding the stored datums,
    hold the same state, and every service's data encodes."""
    leader = harness.replica
    follower = Replica()
    for index, command in enumerate(leader.log, start=1):
        follower.machine.apply(Entry(Term(1), Index(index), command))
    assert dict(follower.datums.items()) == dict(leader.datums.items())
    restarted = DatumTable(dict(leader.datums.items()))
    state = NamingState(restarted)
    for service in state.all_services():
        orjson.dumps([repr(i) for i in state.instances(service)])
        assert state.service(service) is not None
    state.switches()
    state.namespaces()


@SETTINGS
@given(batch=requests)
def test_every_accepted_request_applies_and_encodes_on_every_replica(
    harness: Harness, batch: list[Request]
) -> None:
    harness.reset()
    for request in batch:
        proposed_before = len(harness.replica.log)
        status, text = harness.run(request)
        proposed = len(harness.replica.log) > proposed_before
        event(f"{'applied' if proposed else 'not proposed'}: {status}")
        _check_answer(harness, request, status, text, proposed)
        if proposed:
            _check_reads(harness, request)
    _check_replicas(harness)


@SETTINGS
@given(batch=requests, quota_bytes=st.integers(min_value=300, max_value=40_000))
def test_under_a_small_quota_writes_are_refused_clearly_and_replicas_agree(
    harness: Harness, batch: list[Request], quota_bytes: int
) -> None:
    harness.reset(quota_bytes)
    for request in batch:
        proposed_before = len(harness.replica.log)
        status, text = harness.run(request)
        proposed = len(harness.replica.log) > proposed_before
        event(f"quota: {status}")
        _check_answer(harness, request, status, text, proposed)
    assert harness.replica.machine.quota_bytes == quota_bytes
    _check_replicas(harness)


@pytest.mark.parametrize("entry", sorted(SWITCH_ENTRIES))
@pytest.mark.parametrize(
    "value", ["1", str(2**31 - 1), str(2**63 - 1), str(2**63), str(2**64), "1" + "0" * 30, "0.5"]
)
def test_every_switch_at_its_bounds_applies_or_is_refused_naming_it(
    harness: Harness, entry: str, value: str
) -> None:
    harness.reset()
    request = Request("PUT", f"{NS}/operator/switches", params={"entry": entry, "value": value})
    status, text = harness.run(request)
    assert status in (200, 400), text
    if status == 400:
        assert entry in text
        assert "value" in text
        assert harness.replica.log == []
    else:
        assert len(harness.replica.log) == 1
        shown = orjson.loads(harness.run(Request("GET", f"{NS}/operator/switches"))[1])
        for number in (v for v in shown.values() if type(v) is int):
            assert -(2**63) <= number < 2**63
    _check_replicas(harness)
