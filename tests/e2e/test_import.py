"""`naraft import-nacos`: a Nacos 1.x naming data directory (built here from the reference's
format description) is read and proposed into a running cluster; a corrupt file is reported
by name and skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e.harness import local_cluster

from naraft.storage.nacos_import import read_nacos_dir

pytestmark = pytest.mark.e2e

SWITCH_KEY = "com.alibaba.nacos.naming.domains.meta.00-00---000-NACOS_SWITCH_DOMAIN-000---00-00"
NS_B = "3f2a9c1e-namespace-b"


def _instance(ip: str, port: int, service: str, **extra: object) -> dict[str, object]:
    return {
        "instanceId": f"{ip}#{port}#DEFAULT#{service}",
        "ip": ip,
        "port": port,
        "weight": 1.0,
        "healthy": True,
        "enabled": True,
        "ephemeral": False,
        "clusterName": "DEFAULT",
        "serviceName": service,
        "metadata": {"preserved.register.source": "SPRING_CLOUD"},
        "lastBeat": 1626331902096,
        "marked": False,
        "app": "unknown",
        "instanceHeartBeatTimeOut": 15000,
        "ipDeleteTimeout": 30000,
        "instanceHeartBeatInterval": 5000,
        **extra,
    }


def _write_datum(data: Path, namespace: str | None, key: str, value: object) -> Path:
    folder = data / namespace if namespace else data
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / key.replace(":", "#")
    path.write_text(json.dumps({"key": key, "value": value, "timestamp": 7}))
    return path


def build_nacos_home(home: Path) -> Path:
    """Two namespaces, four services (one Dubbo-style with colons, one legacy list), five
    persistent instances, the switch datum, and one truncated file."""
    naming = home / "data" / "naming"
    data = naming / "data"
    data.mkdir(parents=True)
    (naming / "meta.properties").write_text("#Tue Jul 13 12:00:00 CST 2021\nterm=42\n")
    _write_datum(data, None, SWITCH_KEY, {"name": "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00"})
    orders = "DEFAULT_GROUP@@orders"
    _write_datum(
        data,
        "public",
        f"com.alibaba.nacos.naming.domains.meta.public##{orders}",
        {
            "name": orders,
            "groupName": "DEFAULT_GROUP",
            "protectThreshold": 0.5,
            "metadata": {"owner": "team-a"},
            "namespaceId": "public",
            "selector": {"type": "none"},
            "clusterMap": {"DEFAULT": {"name": "DEFAULT", "healthChecker": {"type": "TCP"}}},
        },
    )
    _write_datum(
        data,
        "public",
        f"com.alibaba.nacos.naming.iplist.public##{orders}",
        {
            "instanceList": [
                _instance("10.0.0.1", 8080, orders),
                _instance("10.0.0.2", 8080, orders, weight=2.0),
            ]
        },
    )
    dubbo = "grpA@@providers:com.foo.Bar::"
    _write_datum(
        data,
        NS_B,
        f"com.alibaba.nacos.naming.domains.meta.{NS_B}##{dubbo}",
        {"name": dubbo, "groupName": "grpA", "namespaceId": NS_B, "metadata": {}},
    )
    _write_datum(
        data,
        NS_B,
        f"com.alibaba.nacos.naming.iplist.{NS_B}##{dubbo}",
        {"instanceList": [_instance("10.1.0.1", 20880, dubbo)]},
    )
    # A list with no service metadata file: the service is created for it.
    _write_datum(
        data,
        NS_B,
        f"com.alibaba.nacos.naming.iplist.{NS_B}##DEFAULT_GROUP@@payments",
        {"instanceList": [_instance("10.1.0.9", 9000, "DEFAULT_GROUP@@payments")]},
    )
    # The legacy (pre-1.0) format: a bare array, no group in the key.
    _write_datum(
        data,
        "public",
        "com.alibaba.nacos.naming.iplist.public##legacy",
        [_instance("10.0.9.9", 7000, "legacy", ephemeral=True)],
    )
    corrupt = data / "public" / "com.alibaba.nacos.naming.iplist.public##DEFAULT_GROUP@@broken"
    corrupt.write_text('{"key": "com.alibaba.nacos.naming.iplist.public##DEFAULT_GROUP@@bro')
    return home


def test_the_reader_finds_every_namespace_service_and_instance_and_names_the_corrupt_file(
    tmp_path: Path,
) -> None:
    data = read_nacos_dir(build_nacos_home(tmp_path / "nacos"))
    assert data.term == 42
    assert data.namespaces == sorted(["public", NS_B])
    assert {(s.namespace_id, s.group_name, s.service_name) for s in data.services} == {
        ("public", "DEFAULT_GROUP", "orders"),
        (NS_B, "grpA", "providers:com.foo.Bar::"),
    }
    assert data.instance_count == 5
    legacy = next(lst for lst in data.instance_lists if lst.service_name == "legacy")
    assert legacy.group_name == "DEFAULT_GROUP"
    assert [bad.path.name for bad in data.unreadable] == [
        "com.alibaba.nacos.naming.iplist.public##DEFAULT_GROUP@@broken"
    ]
    assert any("switch" in why for _path, why in data.skipped)


def test_import_nacos_proposes_services_and_persistent_instances_into_the_cluster(
    tmp_path: Path,
) -> None:
    home = build_nacos_home(tmp_path / "nacos")
    with local_cluster(tmp_path / "cluster", size=3) as cluster:
        leader = cluster.wait_ready()
        follower = next(n for n in cluster.nodes if n is not leader)
        run = subprocess.run(
            [sys.executable, "-m", "naraft", "import-nacos", str(home), "--server", follower.url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 1, run.stdout + run.stderr  # the corrupt file is reported
        assert "DEFAULT_GROUP@@broken" in run.stdout
        assert "not JSON" in run.stdout

        def instances(namespace: str, group: str, service: str) -> set[tuple[str, int]]:
            answer = cluster.client.get(
                f"{leader.url}/nacos/v1/ns/instance/list",
                params={"namespaceId": namespace, "groupName": group, "serviceName": service},
            )
            assert answer.status_code == 200, answer.text
            return {(h["ip"], h["port"]) for h in answer.json()["hosts"]}

        assert instances("public", "DEFAULT_GROUP", "orders") == {
            ("10.0.0.1", 8080),
            ("10.0.0.2", 8080),
        }
        assert instances(NS_B, "grpA", "providers:com.foo.Bar::") == {("10.1.0.1", 20880)}
        assert instances(NS_B, "DEFAULT_GROUP", "payments") == {("10.1.0.9", 9000)}
        assert instances("public", "DEFAULT_GROUP", "legacy") == {("10.0.9.9", 7000)}
        service = cluster.client.get(
            f"{leader.url}/nacos/v1/ns/service",
            params={"serviceName": "orders", "groupName": "DEFAULT_GROUP"},
        ).json()
        assert float(service["protectThreshold"]) == 0.5
        assert service["metadata"] == {"owner": "team-a"}
        namespaces = cluster.client.get(f"{leader.url}/nacos/v1/console/namespaces").json()
        assert NS_B in {ns["namespace"] for ns in namespaces["data"]}

        again = subprocess.run(
            [sys.executable, "-m", "naraft", "import-nacos", str(home), "--server", leader.url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "failed requests" in again.stdout
        assert "updated" in again.stdout
        assert instances("public", "DEFAULT_GROUP", "orders") == {
            ("10.0.0.1", 8080),
            ("10.0.0.2", 8080),
        }


def test_import_nacos_takes_a_config_export_zip_through_a_follower(tmp_path: Path) -> None:
    """A zip exported from the cluster (through a follower: forwarded to the leader) is
    imported into another namespace by `naraft import-nacos --configs-zip`, then again with
    ABORT (refused, nothing written) and SKIP."""
    with local_cluster(tmp_path / "cluster", size=3) as cluster:
        leader = cluster.wait_ready()
        follower = next(n for n in cluster.nodes if n is not leader)
        for data_id, content in (("app.yaml", "a: 1\n"), ("db.properties", "url=x")):
            answer = cluster.client.post(
                f"{leader.url}/nacos/v1/cs/configs",
                data={"dataId": data_id, "group": "DEFAULT_GROUP", "content": content,
                      "type": "yaml", "appName": "shop"},
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
        exported = cluster.client.get(
            f"{follower.url}/nacos/v1/cs/configs", params={"exportV2": "true"}
        )
        assert exported.status_code == 200, exported.text
        assert "nacos_config_export_" in exported.headers["Content-Disposition"]
        zip_path = tmp_path / "export.zip"
        zip_path.write_bytes(exported.content)

        def run_import(*extra: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "naraft", "import-nacos", "--configs-zip",
                       str(zip_path), "--namespace", "copy", "--server", follower.url,
                       *extra]  # fmt: skip
            return subprocess.run(command, capture_output=True, text=True, timeout=120)

        first = run_import()
        assert first.returncode == 0, first.stdout + first.stderr
        assert "2 imported, 0 skipped" in first.stdout
        copied = cluster.client.get(
            f"{leader.url}/nacos/v1/cs/configs",
            params={"dataId": "app.yaml", "group": "DEFAULT_GROUP", "tenant": "copy",
                    "show": "all"},
        ).json()  # fmt: skip
        assert (copied["content"], copied["type"], copied["appName"]) == ("a: 1\n", "yaml", "shop")
        aborted = run_import("--policy", "ABORT")
        assert aborted.returncode == 1
        assert "nothing was written" in aborted.stdout
        skipped = run_import("--policy", "skip")
        assert skipped.returncode == 0, skipped.stdout + skipped.stderr
        assert "0 imported, 2 skipped" in skipped.stdout
