"""schemathesis against a live standalone node: the API does what its OpenAPI description
(src/naraft/api/openapi.json) says. Checks: no server error, every status documented, every
content type and body as documented. Bounded: a few dozen examples per operation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from naraft.chaos.cluster import free_ports

pytestmark = pytest.mark.e2e

OPENAPI: Final = Path(__file__).parents[2] / "src" / "naraft" / "api" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(OPENAPI)
load_all_checks()
CHECK_NAMES: Final = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
SELECTED_CHECKS: Final = [check for check in CHECKS.get_all() if check.__name__ in CHECK_NAMES]
EXAMPLES: Final = int(os.environ.get("NARAFT_SCHEMATHESIS_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def node_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("openapi-node")
    (port,) = free_ports(1)
    log = (data_dir / "node.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "naraft",
            "server",
            "--standalone",
            "--id",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(data_dir / "data"),
        ],  # fmt: skip
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=1.0) as client:
            while True:
                try:
                    if client.get(f"{url}/nacos/v1/ns/raft/state").json()["role"] == "leader":
                        break
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                assert time.monotonic() < deadline, "the node did not become leader in 30 s"
                time.sleep(0.1)
        yield url
        log_text = (data_dir / "node.log").read_text(errors="replace")
        assert "Traceback" not in log_text, log_text[-3000:]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_live_api_keeps_to_its_openapi_description(case: Any, node_url: str) -> None:
    case.call_and_validate(base_url=node_url, checks=SELECTED_CHECKS, timeout=10)


def test_the_node_serves_its_openapi_description(node_url: str) -> None:
    served = httpx.get(f"{node_url}/naraft/v1/openapi.json", timeout=5.0)
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/json")
    assert served.json() == json.loads(OPENAPI.read_text())
    assert "/nacos/v1/ns/instance" in served.json()["paths"]
