"""Instance lists served from `ListCache`: an answer is the same as one built from the
stored data at that moment, whatever happened to the service in between, and the cache
stays within its bounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.api.conftest import T0, Env

from naraft.errors import NaraftError
from naraft.naming import service as naming_service
from naraft.naming.commands import RegisterInstance
from naraft.naming.keys import ServiceKey
from naraft.naming.model import ClientAgent
from naraft.naming.validate import RawInstance, RawService
from naraft.naming.views import ListCache, ListedHosts, listed_hosts

SERVICE = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="orders")
JAVA = ClientAgent("Nacos-Java-Client:v1.4.1")


def listed(
    env: Env, *, clusters: str | None = None, healthy_only: bool = False, encoded: bool = False
) -> dict[str, object]:
    return env.naming.list_instances(
        namespace_id=None,
        group_name=None,
        service_name="orders",
        clusters=clusters,
        healthy_only=str(healthy_only).lower(),
        client=JAVA,
        encoded_hosts=encoded,
    )


def fresh(env: Env, *, clusters: tuple[str, ...] = (), healthy_only: bool = False) -> object:
    """The hosts, checksum and threshold flag built from the stored data, no cache."""
    built = listed_hosts(
        SERVICE,
        env.state.service(SERVICE),
        env.state.instances(SERVICE),
        cluster_filter=clusters,
        healthy_only=healthy_only,
        grouped_names=True,
    )
    hosts = orjson.loads(built.hosts_json)
    return [hosts, built.checksum, built.reach_protect_threshold, built.metadata]


def hosts(answer: dict[str, object]) -> list[dict[str, object]]:
    found = answer["hosts"]
    assert isinstance(found, list)
    return found


def persistent(ip: str, **fields: str) -> RawInstance:
    return RawInstance(service_name="orders", ip=ip, port="80", ephemeral="false", **fields)


def shown(answer: dict[str, object]) -> object:
    fields = ("hosts", "checksum", "reachProtectThreshold", "metadata")
    return [answer[name] for name in fields]


async def test_an_unchanged_service_is_answered_from_the_cache_and_a_write_refreshes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds: list[ServiceKey] = []

    def counted(key: ServiceKey, *args: Any, **kwargs: Any) -> ListedHosts:
        builds.append(key)
        return listed_hosts(key, *args, **kwargs)

    monkeypatch.setattr(naming_service, "listed_hosts", counted)
    env = Env()
    await env.naming.register_instance(persistent("10.0.0.1"))
    first, second = listed(env), listed(env)
    assert builds == [SERVICE]  # the second answer was not built again
    assert hosts(first) == hosts(second)

    await env.naming.register_instance(persistent("10.0.0.2"))
    third = listed(env)
    assert [h["ip"] for h in hosts(third)] == ["10.0.0.1", "10.0.0.2"]
    assert third["checksum"] != first["checksum"]

    await env.naming.set_instance_health(persistent("10.0.0.1"), "false")
    assert [h["healthy"] for h in hosts(listed(env))] == [False, True]
    await env.naming.update_service(RawService(service_name="orders", protect_threshold="0.9"))
    assert listed(env)["reachProtectThreshold"] is True
    assert shown(listed(env)) == fresh(env)


async def test_the_encoded_answer_is_the_same_json() -> None:
    env = Env()
    for ip in ("10.0.0.1", "10.0.0.2"):
        await env.naming.register_instance(
            RawInstance(service_name="orders", ip=ip, port="80", metadata='{"b":"2","a":"1"}')
        )
    assert orjson.dumps(listed(env, encoded=True)) == orjson.dumps(listed(env))


async def test_a_rolled_back_write_is_not_served() -> None:
    env = Env()
    await env.naming.register_instance(RawInstance(service_name="orders", ip="10.0.0.1", port="1"))
    before = listed(env)
    env.datums.begin()
    instance = env.state.instances(SERVICE)[0]
    env.state.apply(
        RegisterInstance(instance=replace(instance, ip="10.9.9.9"), stamped_at_ms=T0), 99
    )
    assert len(hosts(listed(env))) == 2
    env.datums.rollback()
    assert shown(listed(env)) == shown(before)


@dataclass(frozen=True, slots=True)
class Op:
    kind: str
    ip: int
    cluster: str
    flag: bool


OPS = st.lists(
    st.builds(
        Op,
        kind=st.sampled_from(["register", "deregister", "health", "weight", "threshold", "list"]),
        ip=st.integers(1, 4),
        cluster=st.sampled_from(["DEFAULT", "c2"]),
        flag=st.booleans(),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS)
async def test_every_list_equals_one_built_from_the_stored_data(ops: list[Op]) -> None:
    env = Env()
    for op in ops:
        raw = persistent(f"10.0.0.{op.ip}", cluster_name=op.cluster)
        try:
            match op.kind:
                case "register":
                    await env.naming.register_instance(raw)
                case "deregister":
                    await env.naming.deregister_instance(raw)
                case "health":
                    await env.naming.set_instance_health(raw, str(op.flag).lower())
                case "weight":
                    await env.naming.update_instance(replace(raw, weight=str(op.ip)), JAVA)
                case "threshold":
                    await env.naming.update_service(
                        RawService(service_name="orders", protect_threshold=str(op.ip / 4))
                    )
        except NaraftError:  # a refused write (no such instance) changes nothing
            pass
        for clusters, only in (((), False), ((op.cluster,), op.flag)):
            answer = listed(env, clusters=",".join(clusters) or None, healthy_only=only)
            assert shown(answer) == fresh(env, clusters=clusters, healthy_only=only)


async def test_the_cache_keeps_to_its_bounds_dropping_the_least_recently_used() -> None:
    env = Env()
    await env.naming.register_instance(persistent("10.0.0.1"))
    one = env.state.instances(SERVICE)[0]
    cache = ListCache(max_entries=2, max_hosts=3)
    built: list[str] = []

    def build(name: str, hosts: int) -> Callable[[], ListedHosts]:
        def make() -> ListedHosts:
            built.append(name)
            instances = [replace(one, ip=f"10.0.1.{n}") for n in range(hosts)]
            return listed_hosts(
                SERVICE, None, instances, cluster_filter=(), healthy_only=False, grouped_names=True
            )

        return make

    stamp = (object(),)
    for name in ("a", "b", "a", "c", "a", "b"):  # c pushes out b (a was used last)
        cache.get((_key(name), (), False, True), stamp, build(name, 1))
    assert built == ["a", "b", "c", "b"]
    assert len(cache) == 2
    cache.get((_key("big"), (), False, True), stamp, build("big", 4))
    cache.get((_key("big"), (), False, True), stamp, build("big", 4))
    assert built[-2:] == ["big", "big"]  # over max_hosts: answered, never kept
    cache.get((_key("two"), (), False, True), stamp, build("two", 2))
    assert len(cache) == 2  # 1 + 2 hosts: within 3
    cache.get((_key("three"), (), False, True), stamp, build("three", 2))
    assert len(cache) == 1  # 2 + 2 > 3: the older entries went


def _key(name: str) -> ServiceKey:
    return ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name=name)
