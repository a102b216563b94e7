"""The deployment files, each checked by its own tool where the tool works here, and by
what naraft needs of it everywhere: Dockerfile (non-root, a data volume, a health check on
readiness; built and run when a Docker daemon answers), docker-compose.yml (three members
naming each other; `docker compose config` when the plugin exists), the Kubernetes
manifests (`kubectl kustomize`; a server-side dry run when a cluster answers), the systemd
unit (`systemd-analyze verify`). Tools that are missing skip their part with the reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from naraft.client import LIVENESS_PATH, READINESS_PATH
from naraft.cluster import wait_for

ROOT: Final = Path(__file__).parents[2]
DOCKERFILE: Final = ROOT / "Dockerfile"
COMPOSE: Final = ROOT / "docker-compose.yml"
KUBERNETES: Final = ROOT / "deploy" / "kubernetes"
UNIT: Final = ROOT / "deploy" / "systemd" / "naraft.service"
TOOL_TIMEOUT: Final = 60


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=TOOL_TIMEOUT, cwd=cwd,
        env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip


def docker_compose_missing() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed here"
    probe = run("docker", "compose", "version")
    if probe.returncode != 0:
        first = (probe.stderr.strip().splitlines() or ["no answer"])[0]
        return f"the docker compose plugin is not installed here ({first})"
    return None


# ---------------------------------------------------------------------- Dockerfile


def instructions() -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip().removesuffix("\\") + " "
        if not raw.rstrip().endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                lines.append((word.upper(), rest.strip()))
            current = ""
    return lines


def test_the_image_runs_as_a_user_keeps_data_in_a_volume_and_checks_readiness() -> None:
    steps = instructions()
    final_stage = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    words = dict(final_stage)
    assert words["FROM"].endswith("-slim")
    assert words["USER"].split(":")[0] not in ("root", "0")
    assert "/var/lib/naraft" in words["VOLUME"]
    assert "NARAFT_DATA_DIR=/var/lib/naraft" in words["ENV"]
    assert READINESS_PATH in words["HEALTHCHECK"]
    # exec form (no shell): the installed console script, then its server command
    script = next(iter(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]))
    assert json.loads(words["ENTRYPOINT"]) == [script, "server"]
    ignored = (ROOT / ".dockerignore").read_text()
    assert ignored.splitlines()[1] == "*"  # a small context: no tests, no .git
    assert "!src/" in ignored


def docker_daemon_missing() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed here"
    info = run("docker", "info", "--format", "{{.ServerVersion}}")
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no usable Docker daemon here: {reason[:120]}"
    return None


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_the_image_builds_and_a_container_answers_readiness() -> None:
    missing = docker_daemon_missing()
    if missing is not None:
        pytest.skip(missing)
    tag = f"naraft-test:{os.getpid()}"
    build = subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(ROOT)], capture_output=True, text=True,
        timeout=800, check=False,
    )  # fmt: skip
    if build.returncode != 0 and "pypi" in build.stderr.lower():
        pytest.skip(f"the build cannot reach PyPI here: {build.stderr.strip()[-200:]}")
    assert build.returncode == 0, build.stderr[-3000:]
    name = f"naraft-test-{os.getpid()}"
    started = run("docker", "run", "-d", "--rm", "--name", name, tag)
    assert started.returncode == 0, started.stderr
    try:

        def ready() -> bool:
            probe = run(
                "docker", "exec", name, "python", "-c",
                "import urllib.request; print(urllib.request.urlopen("
                f"'http://127.0.0.1:8848{READINESS_PATH}', timeout=2).read().decode())",
            )  # fmt: skip
            return probe.returncode == 0 and probe.stdout.strip() == "OK"

        wait_for(ready, timeout_seconds=60, what="the container to answer readiness")
        health = run("docker", "inspect", "--format", "{{.State.Health.Status}}", name)
        assert health.stdout.strip() in ("starting", "healthy"), health
        user = run("docker", "exec", name, "id", "-u")
        assert user.stdout.strip() == "10001"
    finally:
        run("docker", "rm", "-f", name)
        run("docker", "rmi", "-f", tag)


# ---------------------------------------------------------------------- compose


def test_the_compose_file_runs_three_members_that_name_each_other() -> None:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    services = document["services"]
    assert len(services) == 3
    ids, ports, volumes = [], [], []
    for name, service in services.items():
        env = service["environment"]
        assert env["NARAFT_ID"] == f"{name}:8848"
        assert env["NARAFT_PEERS"].split(",") == [f"{n}:8848" for n in services]
        assert "NARAFT_CLUSTER_SECRET" in env
        assert service["command"] == []  # not the image's --standalone
        ids.append(env["NARAFT_ID"])
        ports += service["ports"]
        volumes += service["volumes"]
    assert len(set(ports)) == 3
    assert len({v.split(":")[0] for v in volumes}) == 3
    assert all(v.endswith(":/var/lib/naraft") for v in volumes)


def test_docker_compose_accepts_the_compose_file() -> None:
    missing = docker_compose_missing()
    if missing is not None:
        pytest.skip(missing)
    checked = run("docker", "compose", "-f", str(COMPOSE), "config", "-q",
                  env={"NARAFT_CLUSTER_SECRET": "compose-test-secret"})  # fmt: skip
    assert checked.returncode == 0, checked.stderr


# ---------------------------------------------------------------------- Kubernetes


def manifests() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KUBERNETES / "naraft.yaml").read_text()) if d]


def test_the_statefulset_probes_health_and_takes_its_secret_from_a_secret() -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for document in manifests():
        by_kind.setdefault(document["kind"], []).append(document)
    (headless,) = [s for s in by_kind["Service"] if s["spec"].get("clusterIP") == "None"]
    assert headless["spec"]["publishNotReadyAddresses"] is True
    (stateful,) = by_kind["StatefulSet"]
    spec = stateful["spec"]
    assert spec["serviceName"] == headless["metadata"]["name"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == LIVENESS_PATH
    assert container["readinessProbe"]["httpGet"]["path"] == READINESS_PATH
    env = {e["name"]: e for e in container["env"]}
    assert env["NARAFT_CLUSTER_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "naraft"
    peers = env["NARAFT_PEERS"]["value"].split(",")
    assert len(peers) == spec["replicas"]
    assert env["NARAFT_ID"]["value"].replace("$(POD_NAME)", "naraft-0") == peers[0]
    assert {"name": "data", "mountPath": "/var/lib/naraft"} in container["volumeMounts"]


def test_kubectl_builds_the_manifests() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed here")
    built = run("kubectl", "kustomize", str(KUBERNETES))
    assert built.returncode == 0, built.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(built.stdout) if d)
    assert kinds == ["PodDisruptionBudget", "Service", "Service", "StatefulSet"]


def test_a_kubernetes_server_accepts_the_manifests() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed here")
    reachable = run("kubectl", "version", "--request-timeout=3s")
    if reachable.returncode != 0:
        pytest.skip("no Kubernetes API server answers here (kubectl's dry runs need one)")
    for path in ("naraft.yaml", "secret.example.yaml"):
        checked = run("kubectl", "apply", "--dry-run=server", "-f", str(KUBERNETES / path))
        assert checked.returncode == 0, checked.stderr


# ---------------------------------------------------------------------- systemd


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    beside = Path(sys.executable).parent / "naraft"
    installed = str(beside) if beside.exists() else shutil.which("naraft")
    if installed is None:
        pytest.skip("no naraft command on PATH to stand in for /usr/local/bin/naraft")
    # verify checks that ExecStart's program exists: point it at this machine's naraft
    unit = tmp_path / "naraft.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/naraft", installed))
    checked = run("systemd-analyze", "verify", str(unit))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == "", checked.stderr  # no key ignored, no warning
    text = UNIT.read_text()
    assert "User=naraft" in text
    assert "StateDirectory=naraft" in text
