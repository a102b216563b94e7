"""End-to-end fixtures: real `naraft server` processes on loopback (see harness.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.harness import JS_DIR, SDK3_DIR, LocalCluster, local_cluster


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path / "cluster", size=3) as cluster:
        cluster.wait_ready()
        yield cluster


@pytest.fixture(scope="module")
def npm_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The npm client installed with `npm ci` into a cache directory keyed by the lock
    file's hash; the path of the driver script in it."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        pytest.skip("npm and node are not installed: the npm nacos client cannot run")
    lock = (JS_DIR / "package-lock.json").read_bytes()
    cache_root = Path(os.environ.get("NARAFT_NPM_CACHE", Path.home() / ".cache" / "naraft-npm"))
    target = cache_root / hashlib.sha256(lock).hexdigest()[:16]
    if not (target / "node_modules" / "nacos").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(JS_DIR / name, target / name)
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--cache", str(cache_root / "npm-cache")],
            cwd=target,
            check=True,
            capture_output=True,
            timeout=150,
        )
    shutil.copy(JS_DIR / "config_client.js", target / "config_client.js")
    return target / "config_client.js"


@pytest.fixture(scope="session")
def sdk3() -> Path:
    """The Python of a venv holding nacos-sdk-python 3.x (pinned in sdk3/requirements.txt),
    made once into a cache directory keyed by the requirements' hash: 3.x and the 2.0.x in
    the project's venv share a distribution name, so they cannot live in one venv."""
    requirements = SDK3_DIR / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    cache_root = Path(os.environ.get("NARAFT_SDK3_CACHE", Path.home() / ".cache" / "naraft-sdk3"))
    target = cache_root / digest
    python = target / "bin" / "python"
    if not (target / "ready").exists():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "-r", str(requirements)],
            check=True,
            capture_output=True,
            timeout=600,
        )  # fmt: skip
        (target / "ready").write_text("ok\n")
    return python
