"""The input nemesis itself: seeded and reproducible, every kind produced, its own names, and
its idea of valid and invalid matching naraft's validation (so a refusal it reports is the
server's fault, not the nemesis's). Its answers' contract and the bookkeeping of what was
acknowledged, too. No cluster: `naraft chaos` runs it against one."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp import web
from multidict import MultiDict

from naraft.api import core_ops
from naraft.api.params import Params
from naraft.chaos import grpc_inputs, inputs
from naraft.chaos.inputs import (
    ALL_KINDS,
    DEFAULT_KINDS,
    Expect,
    InputStats,
    InstanceAck,
    KvAck,
    Probe,
    ProbeFactory,
    ProbeKind,
    SwitchAck,
    contract_problem,
    parse_kinds,
    raw_exchange,
)
from naraft.chaos.workload import NAMING_PREFIX, SET_PREFIX
from naraft.configs import validate as config_validate
from naraft.errors import InvalidArgumentError, NotFoundError, UnsupportedError
from naraft.grpc.client import Answer
from naraft.grpc.clients import ClientViews, client_id_param
from naraft.grpc.connections import ConnectionTable
from naraft.logs import set_log_level
from naraft.naming import validate
from naraft.naming.keys import InstanceKey, ServiceKey
from naraft.naming.switches import Switches, switches_view, with_entry
from naraft.state.kv import MAX_VALUE_BYTES

DRAWS = 300


def _fingerprint(probe: Probe) -> tuple[object, ...]:
    return (probe.kind, probe.node, probe.label, probe.body, probe.form, probe.chunks, probe.grpc)


def _draw(seed: int, kinds: tuple[ProbeKind, ...] = ALL_KINDS, n: int = DRAWS) -> list[Probe]:
    factory = ProbeFactory(random.Random(seed), kinds, nodes=3)
    return [factory.next() for _ in range(n)]


# Two tests call asyncio.run: close the loop an earlier async test left behind first.
pytestmark = pytest.mark.usefixtures("no_leftover_event_loop")


def test_the_same_seed_gives_the_same_requests_and_another_seed_others() -> None:
    first = [_fingerprint(p) for p in _draw(7, n=200)]
    assert first == [_fingerprint(p) for p in _draw(7, n=200)]
    assert first != [_fingerprint(p) for p in _draw(8, n=200)]


def test_every_kind_is_produced_on_every_node_and_only_the_kinds_asked_for() -> None:
    # a kind of weight 1 (of about 50) is missed by 300 draws 0.3 % of the time: 1,500 make
    # that about 1e-13, so a change that draws differently cannot fail this by chance
    probes = _draw(1, n=1500)
    assert set(Counter(p.kind for p in probes)) == set(ProbeKind)
    assert {p.node for p in probes} == {0, 1, 2}
    only = (ProbeKind.SWITCH_BOUNDS, ProbeKind.SLOW_CLIENT)
    assert {p.kind for p in _draw(1, only, n=100)} == set(only)


def test_the_kind_lists_parse_and_the_default_is_every_kind() -> None:
    assert parse_kinds("all") == ALL_KINDS
    assert parse_kinds("default") == ALL_KINDS == DEFAULT_KINDS
    assert parse_kinds("kv-large, slow-client") == (ProbeKind.KV_LARGE, ProbeKind.SLOW_CLIENT)
    for kinds in (ALL_KINDS, DEFAULT_KINDS, (ProbeKind.KV_OVER, ProbeKind.SLOW_CLIENT)):
        assert parse_kinds(inputs.kinds_text(kinds)) == kinds
    with pytest.raises(ValueError, match="no-such-kind"):
        parse_kinds("no-such-kind")


def test_the_nemesis_never_touches_the_workloads_keys_or_services() -> None:
    for probe in _draw(2):
        if probe.path.startswith(inputs.KV_PATH):
            key = probe.path.removeprefix(inputs.KV_PATH + "/")
            assert key.startswith(inputs.KEY_PREFIX)
            assert not key.startswith((SET_PREFIX, NAMING_PREFIX, "r"))
        for name, value in probe.form or ():
            if name == "serviceName" and probe.expect is not Expect.REFUSE:
                assert value.startswith(inputs.SERVICE_PREFIX)
                assert value != "chaos-set"


def test_kv_values_sit_at_their_sizes_and_are_incompressible() -> None:
    import zlib

    sizes: dict[ProbeKind, set[int]] = {}
    for probe in _draw(3):
        if probe.kind in (ProbeKind.KV_LARGE, ProbeKind.KV_LIMIT, ProbeKind.KV_OVER):
            assert probe.body is not None
            value = orjson.loads(probe.body)["value"]
            sizes.setdefault(probe.kind, set()).add(len(value.encode()))
            assert len(zlib.compress(value.encode()[:65536])) > 0.7 * 65536
            if probe.kind is not ProbeKind.KV_OVER:
                assert isinstance(probe.ack, KvAck)
    assert sizes[ProbeKind.KV_LIMIT] == {MAX_VALUE_BYTES}
    assert sizes[ProbeKind.KV_OVER] == {MAX_VALUE_BYTES + 1}
    assert all(256 << 10 <= s < 900 << 10 for s in sizes[ProbeKind.KV_LARGE])


def _raw_instance(form: tuple[tuple[str, str], ...]) -> validate.RawInstance:
    fields = dict(form)
    return validate.RawInstance(
        namespace_id=fields.get("namespaceId"),
        service_name=fields.get("serviceName"),
        cluster_name=fields.get("clusterName"),
        ip=fields.get("ip"),
        port=fields.get("port"),
        weight=fields.get("weight"),
        enabled=fields.get("enabled"),
        ephemeral=fields.get("ephemeral"),
        metadata=fields.get("metadata"),
    )


def test_valid_registrations_pass_naraft_validation_and_invalid_ones_do_not() -> None:
    seen = Counter[Expect]()
    for probe in _draw(4, (ProbeKind.INSTANCE_EXTREME, ProbeKind.INSTANCE_INVALID)):
        assert probe.form is not None
        seen[probe.expect] += 1
        if probe.expect is Expect.ACCEPT:
            parsed = validate.instance(_raw_instance(probe.form))
            assert isinstance(probe.ack, InstanceAck)
            assert (parsed.ip, parsed.port, parsed.weight) == (
                probe.ack.ip,
                probe.ack.port,
                probe.ack.weight,
            )
            assert dict(parsed.metadata) == dict(probe.ack.metadata)
            body = "&".join(f"{k}={v}" for k, v in probe.form)
            assert len(body.encode()) < inputs.BODY_LIMIT  # fits before percent-encoding
        else:
            with pytest.raises(InvalidArgumentError):
                validate.instance(_raw_instance(probe.form))
    assert seen[Expect.ACCEPT] > 50
    assert seen[Expect.REFUSE] > 50


def _parse_metadata_batch(form: tuple[tuple[str, str], ...]) -> None:
    """What the batch metadata route checks before it proposes anything."""
    fields = dict(form)
    validate.service_key(fields.get("namespaceId"), None, fields.get("serviceName"))
    validate.consistency_type(fields.get("consistencyType"))
    validate.metadata_targets(fields.get("instances"))
    validate.metadata(validate.required("metadata", fields.get("metadata")))


def test_batch_metadata_probes_parse_as_the_route_parses_them() -> None:
    seen = Counter[Expect]()
    listed = Counter[int]()
    for probe in _draw(5, (ProbeKind.METADATA_BATCH,)):
        assert probe.form is not None
        assert probe.method in ("PUT", "DELETE")
        seen[probe.expect] += 1
        if probe.expect is Expect.ACCEPT:
            _parse_metadata_batch(probe.form)
            listed[len(validate.metadata_targets(dict(probe.form)["instances"]))] += 1
            assert len(urlencode(probe.form).encode()) < inputs.BODY_LIMIT
        else:
            with pytest.raises(InvalidArgumentError):
                _parse_metadata_batch(probe.form)
    assert seen[Expect.ACCEPT] > 50
    assert seen[Expect.REFUSE] > 100
    assert listed[validate.MAX_METADATA_BATCH] > 10  # lists at the bound are sent


def test_clone_probes_parse_as_the_route_parses_them() -> None:
    """Accepted ones are bodies the route takes (lists at the bound among them), written
    only into the nemesis's own namespace; refused ones fail the body's or the policy's
    parse, so each is a 400, never a RestResult code."""
    seen = Counter[Expect]()
    listed = Counter[int]()
    for probe in _draw(6, (ProbeKind.CONFIG_CLONE,)):
        assert probe.body is not None
        query = dict(probe.params)
        assert (probe.method, query["clone"], query["tenant"]) == ("POST", "true", "nemesis-clones")
        assert len(probe.body) < inputs.BODY_LIMIT
        seen[probe.expect] += 1
        if probe.expect is Expect.ACCEPT:
            assert query["policy"] == "OVERWRITE"
            listed[len(config_validate.clone_sources(probe.body))] += 1
        else:
            policy_ok = query["policy"] == "OVERWRITE"
            if policy_ok:
                with pytest.raises(InvalidArgumentError):
                    config_validate.clone_sources(probe.body)
            else:
                assert probe.body == b"[]"
    assert seen[Expect.ACCEPT] > 50
    assert seen[Expect.REFUSE] > 100
    assert listed[config_validate.MAX_IDS] > 10  # lists at the bound are sent
    assert listed[0] > 10


def _parse_cluster_update(form: tuple[tuple[str, str], ...]) -> None:
    """What the cluster update route checks before it proposes anything."""
    fields = dict(form)
    validate.service_key(fields.get("namespaceId"), None, fields.get("serviceName"))
    validate.cluster_name(validate.required("clusterName", fields.get("clusterName")))
    validate.check_port(fields.get("checkPort"))
    flag = validate.required("useInstancePort4Check", fields.get("useInstancePort4Check"))
    validate.flag("useInstancePort4Check", flag, True)
    validate.health_checker(fields.get("healthChecker"))
    validate.metadata(fields.get("metadata"))


def test_cluster_update_probes_parse_as_the_route_parses_them() -> None:
    seen = Counter[Expect]()
    for probe in _draw(7, (ProbeKind.CLUSTER_UPDATE,)):
        assert probe.form is not None
        assert (probe.method, probe.path) == ("PUT", "/nacos/v1/ns/cluster")
        assert len(urlencode(probe.form).encode()) < inputs.BODY_LIMIT
        seen[probe.expect] += 1
        if probe.expect is Expect.ANY:  # taken if its service exists yet, else refused
            _parse_cluster_update(probe.form)
        else:
            assert probe.expect is Expect.REFUSE
            with pytest.raises(InvalidArgumentError):
                _parse_cluster_update(probe.form)
    assert seen[Expect.ANY] > 50
    assert seen[Expect.REFUSE] > 100


def test_switch_values_at_the_bounds_parse_and_those_beyond_do_not() -> None:
    for probe in _draw(5, (ProbeKind.SWITCH_BOUNDS, ProbeKind.SWITCH_OVERFLOW)):
        assert probe.form is not None
        fields = dict(probe.form)
        if probe.expect is Expect.ACCEPT:
            with_entry(Switches(), fields["entry"], fields["value"])
            assert isinstance(probe.ack, SwitchAck)
        elif probe.expect is Expect.REFUSE:
            assert probe.ack is None
            try:
                with_entry(Switches(), fields["entry"], fields["value"])
            except InvalidArgumentError:
                continue
            # a build without the bound still takes integers past 64 bits (the poison switch)
            assert int(fields["value"]) >= 2**63, probe.label


def test_log_level_probes_parse_as_the_route_parses_them() -> None:
    probes = [p for p in _draw(12, (ProbeKind.UNKNOWN_ROUTE,), n=400) if p.path in inputs.LOG_PATHS]
    assert {p.expect for p in probes} == {Expect.ACCEPT, Expect.REFUSE}
    for probe in probes:
        assert probe.method == "PUT"
        params = dict(probe.params)
        if probe.expect is Expect.ACCEPT:
            assert set_log_level(params["logName"], params["logLevel"]) == (inputs.NEMESIS_LOGGER,)
        else:
            with pytest.raises(InvalidArgumentError):
                set_log_level(params["logName"], params["logLevel"])


def test_core_ops_probes_are_refused_by_the_routes_parser() -> None:
    probes = [
        p
        for p in _draw(13, (ProbeKind.UNKNOWN_ROUTE,), n=400)
        if p.path == core_ops.CORE_OPS_RAFT_PATH
    ]
    assert len(probes) > 20
    members = ("127.0.0.1:8848", "127.0.0.2:8848")  # 127.0.0.1:7848 names the first
    for probe in probes:
        assert (probe.method, probe.expect) == ("POST", Expect.REFUSE)
        assert probe.body is not None
        # a 4xx refusal: the answer contract counts a 501 as a server fault
        with pytest.raises(InvalidArgumentError):
            core_ops.parse_command(probe.body, members)
    with pytest.raises(UnsupportedError):  # what the nemesis must therefore not send
        core_ops.parse_command(b'{"command": "doSnapshot", "value": "x:1"}', members)
    assert core_ops.parse_command(
        b'{"command": "transferLeader", "value": "127.0.0.1:7848"}', members
    ) == ("transferLeader", "127.0.0.1:8848")


class _NoClients:
    """A node's subscriptions, owned instances and registry, all empty."""

    def followed_by(self, connection_id: str) -> frozenset[tuple[ServiceKey, str]]:
        return frozenset()

    def followers_of(self, service: ServiceKey) -> tuple[str, ...]:
        return ()

    def keys_of(self, owner: str) -> frozenset[InstanceKey]:
        return frozenset()

    def instances(self, service: ServiceKey, *, ephemeral: bool | None = None) -> tuple[()]:
        return ()


def test_client_probes_are_refused_by_the_route_as_a_node_holding_no_such_client() -> None:
    probes = [
        p for p in _draw(14, (ProbeKind.UNKNOWN_ROUTE,), n=4_000) if p.path == inputs.V2_CLIENT
    ]
    assert len(probes) > 10
    # the route's parser and views, over a node with no 2.x connection (the nemesis
    # opens none; a campaign's gRPC clients have ids it never makes up)
    empty = _NoClients()
    table = ConnectionTable("n1", max_connections=4, now_ms=lambda: 0)
    views = ClientViews(table, empty, empty, empty, now_ms=lambda: 0)
    refusals = set()
    for probe in probes:
        assert (probe.method, probe.expect) == ("GET", Expect.REFUSE)
        with pytest.raises((InvalidArgumentError, NotFoundError)) as refused:
            views.detail(client_id_param(Params(MultiDict(probe.params))))
        refusals.add(type(refused.value))
    assert refusals == {InvalidArgumentError, NotFoundError}  # malformed ones, and made-up ones


def test_oversized_bodies_are_over_the_limit_and_many_params_are_many() -> None:
    for probe in _draw(6, (ProbeKind.OVERSIZED_BODY, ProbeKind.MANY_PARAMS), n=40):
        if probe.kind is ProbeKind.OVERSIZED_BODY:
            assert probe.body is not None
            assert len(probe.body) > inputs.BODY_LIMIT
        else:
            assert len(probe.form or probe.params) >= 1000
            if probe.params:  # within aiohttp's request line limit: parameters, not a long line
                assert len(urlencode(probe.params)) < 8000


def test_answers_are_held_to_their_contract() -> None:
    valid = _draw(9, (ProbeKind.INSTANCE_EXTREME,), n=1)[0]
    invalid = _draw(9, (ProbeKind.INSTANCE_INVALID,), n=1)[0]
    raw = _draw(9, (ProbeKind.MALFORMED_HTTP,), n=1)[0]
    assert contract_problem(valid, "200") is None
    assert contract_problem(valid, "503") is None  # no leader during a fault
    assert contract_problem(valid, "timeout") is None
    assert "valid input refused" in (contract_problem(valid, "413") or "")
    assert contract_problem(invalid, "400") is None
    assert "invalid input acknowledged" in (contract_problem(invalid, "200") or "")
    assert "answered 500" in (contract_problem(invalid, "500") or "")
    assert contract_problem(raw, "closed") is None
    assert "answered 502" in (contract_problem(raw, "502") or "")


def test_acked_writes_are_remembered_and_a_later_unknown_switch_write_noted() -> None:
    stats = InputStats()
    put = _draw(10, (ProbeKind.KV_LARGE,), n=2)
    stats.note(put[0], "200")
    stats.note(put[1], "timeout")
    switch = _draw(11, (ProbeKind.SWITCH_BOUNDS,), n=2)
    stats.note(switch[0], "200")
    stats.note(switch[1], "503")
    assert stats.acked[:2] == [put[0].ack, switch[0].ack]
    outcomes = [o for log in stats.switch_log.values() for _, o in log]
    assert sorted(outcomes) == ["acked", "unknown"]
    summary = stats.summary(ALL_KINDS)
    assert summary["sent"] == {"kv-large": 2, "switch-bounds": 2}
    assert summary["statuses"] == {
        "kv-large": {"200": 1, "timeout": 1},
        "switch-bounds": {"200": 1, "503": 1},
    }


def test_a_raw_probe_reads_the_status_and_a_slow_one_is_abandoned() -> None:
    async def scenario() -> tuple[str, str, list[bytes]]:
        received: list[bytes] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read(65536)
            received.append(data)
            if data.startswith(b"GARBAGE"):
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
            else:
                await reader.read()  # the slow client: wait until it walks away
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        class Node:
            listen_port = port

        stop = asyncio.Event()
        bad = Probe(
            kind=ProbeKind.MALFORMED_HTTP,
            node=0,
            label="garbage",
            expect=Expect.REFUSE,
            chunks=(b"GARBAGE\r\n\r\n",),
        )
        slow = Probe(
            kind=ProbeKind.SLOW_CLIENT,
            node=0,
            label="slow",
            expect=Expect.REFUSE,
            chunks=(b"PUT /x HTTP/1.1\r\n", b"Host: a\r\n"),
            pause=0.05,
            abandon=True,
        )
        first = await raw_exchange(Node(), bad, stop)  # type: ignore[arg-type]
        second = await raw_exchange(Node(), slow, stop)  # type: ignore[arg-type]
        server.close()
        await server.wait_closed()
        return first, second, received

    first, second, received = asyncio.run(scenario())
    assert first == "400"
    assert second == "abandoned"
    assert received[0] == b"GARBAGE\r\n\r\n"


class _FakeNode:
    """Serves what `inputs.check` reads (kv, instance list, switches) from dictionaries."""

    def __init__(self, name: str) -> None:
        self.id = name
        self.url = ""
        self.kv: dict[str, str] = {}
        self.hosts: dict[str, list[dict[str, object]]] = {}
        self.switches: dict[str, object] = dict(switches_view(Switches()))

    def app(self) -> web.Application:
        async def kv(request: web.Request) -> web.Response:
            key = request.match_info["key"]
            if key not in self.kv:
                return web.json_response({"error": "not found"}, status=404)
            return web.json_response({"key": key, "value": self.kv[key], "version": 1})

        async def listing(request: web.Request) -> web.Response:
            return web.json_response({"hosts": self.hosts.get(request.query["serviceName"], [])})

        async def switches(_request: web.Request) -> web.Response:
            return web.json_response(self.switches)

        app = web.Application()
        app.router.add_get(inputs.KV_PATH + "/{key:.*}", kv)
        app.router.add_get(inputs.INSTANCE_PATH + "/list", listing)
        app.router.add_get(inputs.SWITCHES_PATH, switches)
        return app


def _probe(kind: ProbeKind, ack: inputs.Ack) -> Probe:
    return Probe(kind=kind, node=0, label="x", expect=Expect.ACCEPT, ack=ack)


def test_the_check_after_healing_finds_a_lost_write_a_changed_instance_and_a_wrong_switch() -> None:
    value = "v" * 1000
    kv_ack = KvAck(key="nemesis/1", sha256=inputs._digest(value), length=len(value))
    instance = InstanceAck(
        service="nemesis-1", ip="::1", port=1, cluster="DEFAULT", weight=0.0, metadata={"k": "é"}
    )
    host = {"ip": "::1", "port": 1, "clusterName": "DEFAULT", "weight": 0.0, "metadata": {"k": "é"}}

    async def scenario(break_things: bool) -> list[str]:
        nodes = [_FakeNode(f"n{i}") for i in range(3)]
        runners = []
        for node in nodes:
            runner = web.AppRunner(node.app())
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            node.url = f"http://127.0.0.1:{port}"
            node.kv[kv_ack.key] = value
            node.hosts["nemesis-1"] = [dict(host)]
            node.switches["clientBeatInterval"] = 7
            node.switches["checkTimes"] = 3
            runners.append(runner)
        stats = InputStats()
        stats.note(_probe(ProbeKind.KV_LARGE, kv_ack), "200")
        stats.note(_probe(ProbeKind.INSTANCE_EXTREME, instance), "200")
        stats.note(
            _probe(ProbeKind.SWITCH_BOUNDS, SwitchAck(entry="clientBeatInterval", value="7")), "200"
        )
        # acked, then a write of unknown outcome: either value may be there
        stats.note(
            _probe(ProbeKind.SWITCH_BOUNDS, SwitchAck(entry="healthCheckTimes", value="1")), "200"
        )
        stats.note(
            _probe(ProbeKind.SWITCH_BOUNDS, SwitchAck(entry="healthCheckTimes", value="3")),
            "timeout",
        )
        # an instance whose later registration timed out: present, its fields not checked
        unsure = InstanceAck(
            service="nemesis-1", ip="10.0.0.9", port=9, cluster="DEFAULT", weight=1.0, metadata={}
        )
        stats.note(_probe(ProbeKind.INSTANCE_EXTREME, unsure), "200")
        stats.note(_probe(ProbeKind.INSTANCE_EXTREME, unsure), "timeout")
        for node in nodes:
            node.hosts["nemesis-1"].append(
                {"ip": "10.0.0.9", "port": 9, "clusterName": "DEFAULT", "weight": 5.0}
            )
        if break_things:
            del nodes[1].kv[kv_ack.key]
            nodes[2].hosts["nemesis-1"][0]["metadata"] = {"k": "e"}
            for node in nodes:
                node.switches["clientBeatInterval"] = 5000
            nodes[0].switches["pushEnabled"] = False

        class Cluster:
            pass

        cluster = Cluster()
        cluster.nodes = nodes  # type: ignore[attr-defined]
        try:
            return await inputs.check(cluster, stats)  # type: ignore[arg-type]
        finally:
            for runner in runners:
                await runner.cleanup()

    assert asyncio.run(scenario(break_things=False)) == []
    problems = asyncio.run(scenario(break_things=True))
    assert len(problems) == 4, problems
    assert "acked nemesis/1 (1000 bytes) missing on n1: HTTP 404" in problems
    assert "acked nemesis-1 ::1:1 differs on n2" in problems
    assert any("switch documents differ" in p and "pushEnabled" in p for p in problems)
    assert "switch clientBeatInterval: acked '7', the nodes hold 5000" in problems


def test_forged_auth_probes_expect_refusal_of_a_client_identity() -> None:
    probes = _draw(12, (ProbeKind.FORGED_AUTH,), n=200)
    labels = Counter(p.label.split(" with ", 1)[1].split(",")[0] for p in probes)
    assert {"Nacos's default key", "alg none", "expired", "a random key"} <= set(labels)
    for probe in probes:
        carries_identity = ("X-Naraft-Identity", "nacos") in probe.headers
        assert probe.expect is (Expect.REFUSE if carries_identity else Expect.ANY)
        assert (probe.ack is None) is carries_identity
        assert len(urlencode(probe.params)) < 8000  # within aiohttp's request line limit
        if carries_identity:
            assert "invalid input acknowledged" in (contract_problem(probe, "200") or "")
        assert contract_problem(probe, "403") is None


def test_peer_forged_probes_cover_both_routes_and_every_forgery_and_expect_refusal() -> None:
    probes = _draw(14, (ProbeKind.PEER_FORGED,), n=120)
    assert {p.label for p in probes} == {
        f"a Raft {what}, {forgery}"
        for what in ("stream upgrade", "batch")
        for forgery in ("unsigned", "a made-up signature", "a stale time")
    }
    for probe in probes:
        assert probe.expect is Expect.REFUSE
        assert probe.ack is None
        assert ("X-Naraft-Sender", "nemesis:1") in probe.headers
        assert contract_problem(probe, "403") is None
        assert "invalid input acknowledged" in (contract_problem(probe, "204") or "")
        assert "invalid input acknowledged" in (contract_problem(probe, "101") or "")


async def test_peer_forged_probes_are_refused_by_the_peer_routes_and_deliver_nothing() -> None:
    """Against the real peer routes (a member's secret, membership and recipient)."""
    import aiohttp

    from naraft.transport import peer_routes, track_streams

    delivered: list[object] = []
    app = web.Application()
    app.add_routes(peer_routes(delivered.append, b"s3cret", ["a:1", "b:1"], self_id="b:1"))
    track_streams(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]

        class Node:
            url = f"http://{host}:{port}"

        statuses = Counter()
        async with aiohttp.ClientSession() as session:
            for probe in _draw(15, (ProbeKind.PEER_FORGED,), n=40):
                statuses[await inputs.http_exchange(session, Node(), probe)] += 1  # type: ignore[arg-type]
    finally:
        await runner.cleanup()
    assert statuses == {"403": 40}
    assert delivered == []


def test_grpc_cases_expect_refusals_in_nacos_shapes_and_acknowledge_nothing() -> None:
    probes = _draw(13, tuple(inputs.GRPC_KINDS), n=400)
    assert {p.kind for p in probes} == set(inputs.GRPC_KINDS)
    for probe in probes:
        assert probe.grpc is not None
        assert probe.ack is None
        assert probe.expect is Expect.REFUSE
        assert probe.grpc.answers
        assert not any(a.endswith(":0") for a in probe.grpc.answers), probe.label  # no success
    modes = {p.kind: p.grpc.mode for p in probes if p.grpc is not None}
    assert modes[ProbeKind.GRPC_NO_SETUP] is grpc_inputs.Mode.UNREGISTERED
    assert modes[ProbeKind.GRPC_GARBAGE_STREAM] is grpc_inputs.Mode.GARBAGE_STREAM
    assert modes[ProbeKind.GRPC_SILENT_CLIENT] is grpc_inputs.Mode.SILENT
    over = [p for p in probes if p.grpc and "RESOURCE_EXHAUSTED" in p.grpc.answers]
    assert over, "no message over the gRPC limit"
    assert all(len(p.grpc.data) > grpc_inputs.MAX_MESSAGE_BYTES for p in over if p.grpc)
    fields = {
        p.label.split()[1].split("=")[0] for p in probes if p.kind is ProbeKind.GRPC_BAD_FIELDS
    }
    every = {"namespace", "groupName", "serviceName", "type", "instance"}
    assert fields == every | set(grpc_inputs.INSTANCE_FIELDS)


def test_grpc_answers_are_held_to_the_answers_their_case_names() -> None:
    field = _draw(14, (ProbeKind.GRPC_BAD_FIELDS,), n=1)[0]
    body = _draw(14, (ProbeKind.GRPC_BAD_BODY,), n=1)[0]
    assert contract_problem(field, "InstanceResponse:400") is None
    assert contract_problem(field, "ErrorResponse:503") is None  # no leader during a fault
    assert contract_problem(field, "timeout") is None
    assert "answered InstanceResponse:0" in (contract_problem(field, "InstanceResponse:0") or "")
    assert contract_problem(body, "ErrorResponse:502") is None
    assert "not-nacos" in (contract_problem(body, "not-nacos:ErrorResponse") or "")
    assert contract_problem(body, "ErrorResponse:302") is not None


def test_a_grpc_answer_is_labelled_by_type_and_code_and_checked_for_nacos_shape() -> None:
    ok = {"resultCode": 200, "errorCode": 0, "message": "", "success": True}
    refused = {"resultCode": 500, "errorCode": 400, "message": "ip is required"}
    assert grpc_inputs.label_of(Answer("InstanceResponse", ok)) == "InstanceResponse:0"
    assert grpc_inputs.label_of(Answer("InstanceResponse", refused)) == "InstanceResponse:400"
    assert grpc_inputs.label_of(Answer("X", {"errorCode": 400})) == "not-nacos:X"
    no_message = {"resultCode": 500, "errorCode": 400}
    assert grpc_inputs.label_of(Answer("X", no_message)) == "not-nacos:X"


def test_grpc_cases_run_in_their_own_lane_and_silent_clients_with_the_slow_ones() -> None:
    class Cluster:
        nodes = (object(), object(), object())

    def lanes(kinds: tuple[ProbeKind, ...]) -> int:
        nemesis = inputs.InputNemesis(Cluster(), random.Random(1), kinds)  # type: ignore[arg-type]
        return len(nemesis._lanes)

    assert lanes((ProbeKind.GRPC_BAD_BODY, ProbeKind.GRPC_UNDECODABLE)) == 1
    assert lanes((ProbeKind.GRPC_BAD_BODY, ProbeKind.GRPC_SILENT_CLIENT)) == 2
    assert lanes(ALL_KINDS) == 4
