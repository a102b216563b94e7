"""Config with the real nacos-sdk-python 3.x (gRPC) against a 3-node cluster: publish,
get, compare-and-set, remove, and a listener that hears the changes made through every
node over HTTP v1 (so through the nodes that do not hold its connection too)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from tests.e2e.harness import NodeProcess, Sdk3Client, local_cluster

pytestmark = pytest.mark.e2e


def _http(node: NodeProcess, method: str, data_id: str, content: str | None = None) -> None:
    params = {"dataId": data_id, "group": "DEFAULT_GROUP"}
    if content is None:
        answer = httpx.request(method, f"{node.url}/nacos/v1/cs/configs", params=params, timeout=10)
    else:
        answer = httpx.request(
            method,
            f"{node.url}/nacos/v1/cs/configs",
            data={**params, "content": content},
            timeout=10,
        )
    assert (answer.status_code, answer.text) == (200, "true"), answer.text


def test_sdk3_config_on_three_nodes(tmp_path: Path, sdk3: Path) -> None:
    with local_cluster(tmp_path / "c", size=3) as cluster:
        cluster.wait_ready()
        servers = ",".join(node.address for node in cluster.nodes)
        sdk = Sdk3Client(sdk3, servers)
        try:
            assert sdk.call("get", data_id="app.cfg") in ("", None)  # absent (code 300)
            assert sdk.call("publish", data_id="app.cfg", content="v1") is True
            assert sdk.call("get", data_id="app.cfg") == "v1"

            md5 = hashlib.md5(b"v1").hexdigest()
            assert sdk.call("publish", data_id="app.cfg", content="v2", cas_md5=md5) is True
            stale = sdk.try_call("publish", data_id="app.cfg", content="v3", cas_md5=md5)
            assert not stale["ok"]
            assert "md5 may have changed" in stale["error"]
            assert sdk.call("get", data_id="app.cfg") == "v2"

            assert sdk.call("listen", data_id="app.cfg") == "listening"
            for number, node in enumerate(cluster.nodes):
                content = f"through {node.id} #{number}"
                _http(node, "POST", "app.cfg", content)
                sdk.wait_event(lambda e, c=content: e["event"] == "config" and e["content"] == c)

            _http(cluster.nodes[0], "DELETE", "app.cfg")  # heard as an empty content
            sdk.wait_event(lambda e: e["event"] == "config" and e["content"] == "")

            assert sdk.call("publish", data_id="gone.cfg", content="x") is True
            assert sdk.call("remove", data_id="gone.cfg") is True
            assert sdk.call("get", data_id="gone.cfg") in ("", None)
        finally:
            sdk.close()
