"""Config over the 2.x gRPC protocol, end to end: real nodes, `GrpcTestClient` on the wire.

One single-node cluster with auth on (the refusals without a token, then everything else
with the admin's token) and one 3-node cluster with the client's connection on a follower:
its writes and reads travel to the leader, and changes made through the other nodes (over
HTTP v1 and over gRPC) reach its listens as `ConfigChangeNotifyRequest`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.harness import FAST_TIMERS, NodeProcess, local_cluster, wait_for

from naraft.client import login
from naraft.configs.model import content_md5
from naraft.grpc.client import Answer, GrpcTestClient, grpc_address

pytestmark = pytest.mark.e2e

CONFIG_LABELS = {"source": "sdk", "module": "config"}
NOTIFY = "ConfigChangeNotifyRequest"
MAX_CONTENT_BYTES = 2048
WAIT_SECONDS = 20.0


def _try_login(node: NodeProcess, password: str) -> str | None:
    try:
        return login(node.url, password)
    except OSError:  # the bootstrap is still being applied
        return None


def _client(node: NodeProcess, token: str | None = None) -> GrpcTestClient:
    return GrpcTestClient(
        grpc_address(node.address),
        labels=CONFIG_LABELS,
        access_token=token,
        timeout_seconds=WAIT_SECONDS,  # generous: the machine may be loaded by other tests
    )


def _key(data_id: str, group: str = "DEFAULT_GROUP", tenant: str = "") -> dict[str, str]:
    return {"dataId": data_id, "group": group, "tenant": tenant}


async def _publish(client: GrpcTestClient, data_id: str, content: str, **extra: Any) -> Answer:
    addition = extra.pop("additionMap", {"type": "text", "appName": "", "tag": "", "betaIps": ""})
    body = {**_key(data_id), "content": content, "additionMap": addition, **extra}
    return await client.request("ConfigPublishRequest", body)


async def _query(client: GrpcTestClient, data_id: str, **extra: Any) -> Answer:
    return await client.request("ConfigQueryRequest", {**_key(data_id), **extra})


async def _listen(
    client: GrpcTestClient, md5s: dict[str, str], *, listen: bool = True
) -> list[str]:
    contexts = [{**_key(data_id), "md5": md5} for data_id, md5 in md5s.items()]
    answer = await client.request(
        "ConfigBatchListenRequest",
        {**_key(""), "listen": listen, "configListenContexts": contexts},
    )
    assert answer.type == "ConfigChangeBatchListenResponse", answer
    assert answer.ok, answer
    return sorted(c["dataId"] for c in answer.body["changedConfigs"])


async def _pushes_until(client: GrpcTestClient, data_id: str) -> list[str]:
    """The dataIds of the config notifications that arrive up to one for `data_id`."""
    seen: list[str] = []
    async with asyncio.timeout(WAIT_SECONDS):
        while not seen or seen[-1] != data_id:
            push = await client.next_push(NOTIFY, timeout_seconds=WAIT_SECONDS)
            assert (push.body["group"], push.body["tenant"]) == ("DEFAULT_GROUP", "")
            seen.append(push.body["dataId"])
    return seen


def _refused(answer: Answer, kind: str, code: int) -> str:
    assert answer.type == kind, answer
    assert (answer.body["resultCode"], answer.body["errorCode"]) == (500, code), answer
    return str(answer.body["message"])


def _http_publish(node: NodeProcess, data_id: str, content: str, token: str | None = None) -> None:
    params = {"accessToken": token} if token else {}
    answer = httpx.post(
        f"{node.url}/nacos/v1/cs/configs",
        data={"dataId": data_id, "group": "DEFAULT_GROUP", "content": content},
        params=params,
        timeout=10,
    )
    assert (answer.status_code, answer.text) == (200, "true"), answer.text


async def test_config_over_grpc_on_one_node_with_auth(tmp_path: Path) -> None:
    args = (*FAST_TIMERS, "--config-max-content-bytes", str(MAX_CONTENT_BYTES))
    with local_cluster(tmp_path / "c", size=1, extra_args=args, auth="on") as cluster:
        node = cluster.wait_ready()
        assert cluster.admin_password is not None
        password = cluster.admin_password
        token = wait_for(
            lambda: _try_login(node, password), timeout_seconds=30, what="an admin login"
        )

        async with _client(node) as anonymous:  # auth on, no token: 403, typed
            for answer, kind in [
                (await _publish(anonymous, "a", "x"), "ConfigPublishResponse"),
                (await _query(anonymous, "a"), "ConfigQueryResponse"),
                (
                    await anonymous.request(
                        "ConfigBatchListenRequest",
                        {"listen": True, "configListenContexts": [{**_key("a"), "md5": ""}]},
                    ),
                    "ConfigChangeBatchListenResponse",
                ),
            ]:
                _refused(answer, kind, 403)

        async with _client(node, token) as client:
            # not found: Nacos's CONFIG_NOT_FOUND, which the 2.x clients read as absent
            message = _refused(await _query(client, "app.yaml"), "ConfigQueryResponse", 300)
            assert message == "config data not exist"

            published = await _publish(client, "app.yaml", "port: 1", additionMap={"type": "yaml"})
            assert published.type == "ConfigPublishResponse", published
            assert published.ok, published
            got = await _query(client, "app.yaml", tenant="public")  # public is ""
            assert got.ok, got
            assert got.body["content"] == "port: 1"
            assert got.body["md5"] == content_md5("port: 1")
            assert got.body["contentType"] == "yaml"
            assert got.body["lastModified"] > 0
            assert (got.body["isBeta"], got.body["tag"]) == (False, False)

            # compare-and-set: the right md5 replaces, a stale one is refused (nothing changes)
            cas = await _publish(client, "app.yaml", "port: 2", casMd5=content_md5("port: 1"))
            assert cas.ok, cas
            stale = await _publish(client, "app.yaml", "port: 3", casMd5=content_md5("port: 1"))
            assert "md5 may have changed" in _refused(stale, "ConfigPublishResponse", 500)
            assert (await _query(client, "app.yaml")).body["content"] == "port: 2"

            # bad input: 400 in the request's own type, naming the field; nothing written
            no_id = await client.request(
                "ConfigPublishRequest", {"group": "DEFAULT_GROUP", "content": "x"}
            )
            assert "dataId" in _refused(no_id, "ConfigPublishResponse", 400)
            big = await _publish(client, "big", "x" * (MAX_CONTENT_BYTES + 1))
            assert "content" in _refused(big, "ConfigPublishResponse", 400)
            assert _refused(await _query(client, "big"), "ConfigQueryResponse", 300)
            bad_listen = await client.request(
                "ConfigBatchListenRequest", {"configListenContexts": [{"group": "G", "md5": ""}]}
            )
            assert "dataId" in _refused(bad_listen, "ConfigChangeBatchListenResponse", 400)
            gray = await _publish(
                client, "app.yaml", "y", additionMap={"betaIps": "127.0.0.1", "tag": ""}
            )
            assert "gray" in _refused(gray, "ConfigPublishResponse", 501)
            assert "tag" in _refused(
                await _query(client, "app.yaml", tag="blue"), "ConfigQueryResponse", 501
            )

            # listening: answered at once with what differs; a v1 change is pushed
            md5 = content_md5("port: 2")
            assert await _listen(client, {"app.yaml": md5, "new.cfg": ""}) == []
            assert await _listen(client, {"app.yaml": "stale"}) == ["app.yaml"]
            await asyncio.to_thread(_http_publish, node, "new.cfg", "v1", token)
            assert await _pushes_until(client, "new.cfg") == ["new.cfg"]

            removed = await client.request("ConfigRemoveRequest", _key("app.yaml"))
            assert removed.type == "ConfigRemoveResponse", removed
            assert removed.ok, removed
            assert await _pushes_until(client, "app.yaml") == ["app.yaml"]
            assert _refused(await _query(client, "app.yaml"), "ConfigQueryResponse", 300)


async def test_config_over_grpc_through_a_follower(tmp_path: Path) -> None:
    with local_cluster(tmp_path / "c", size=3) as cluster:
        leader = cluster.wait_ready()
        follower, other = [n for n in cluster.nodes if n.id != leader.id]
        async with _client(follower) as client, _client(leader) as on_leader:
            # writes and reads on a follower's connection run on the leader
            assert (await _publish(client, "db.properties", "url=a")).ok
            got = await _query(client, "db.properties")
            assert got.ok, got
            assert got.body["content"] == "url=a", got
            stale = await _publish(client, "db.properties", "url=b", casMd5=content_md5("old"))
            assert "md5 may have changed" in _refused(stale, "ConfigPublishResponse", 500)
            no_id = await client.request("ConfigRemoveRequest", {"group": "DEFAULT_GROUP"})
            assert "dataId" in _refused(no_id, "ConfigRemoveResponse", 400)

            md5s = {"db.properties": content_md5("url=a"), "feature.flags": ""}
            assert await _listen(client, md5s) == []

            # a change through another node, over gRPC (the leader) and HTTP v1 (the third)
            assert (await _publish(on_leader, "db.properties", "url=c")).ok
            assert await _pushes_until(client, "db.properties") == ["db.properties"]
            await asyncio.to_thread(_http_publish, other, "feature.flags", "on")
            assert await _pushes_until(client, "feature.flags") == ["feature.flags"]
            assert await _listen(client, md5s) == ["db.properties", "feature.flags"]

            # listen=false stops the pushes of that config, not of the others
            assert await _listen(client, {"db.properties": ""}, listen=False) == []
            assert (await _publish(on_leader, "db.properties", "url=d")).ok
            assert (await _publish(on_leader, "feature.flags", "off")).ok
            assert await _pushes_until(client, "feature.flags") == ["feature.flags"]

            # a listener's connection that closes is forgotten: the others still hear
            async with _client(other) as second:
                assert await _listen(second, {"feature.flags": ""}) == ["feature.flags"]
            assert (await _publish(on_leader, "feature.flags", "again")).ok
            assert await _pushes_until(client, "feature.flags") == ["feature.flags"]
            removed = await client.request("ConfigRemoveRequest", _key("feature.flags"))
            assert removed.ok, removed
            assert _refused(await _query(on_leader, "feature.flags"), "ConfigQueryResponse", 300)
