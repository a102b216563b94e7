"""`naraft repair skip-entry` on a real data directory holding a poison entry (written through
the store API, as an older build left it): the entry becomes a no-op with its index, term and
a valid checksum, and a node started on the directory applies the rest."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import httpx
import pytest
from tests.e2e.harness import NodeProcess, NodeSpec, free_ports, naraft_command, wait_for

from naraft.client import STATE_PATH, kv_path
from naraft.naming.codec import encode_command
from naraft.naming.commands import UpdateSwitches
from naraft.raft.types import Entry, HardState, Index, NodeId, Term
from naraft.state.kv import PutValue, encode_kv
from naraft.storage import WriteBatch, open_store

pytestmark = pytest.mark.e2e

POISON = encode_command(
    UpdateSwitches(
        entry="clientBeatInterval",
        value="1000000000000000000000000000000",
        stamped_at_ms=1_700_000_000_000,
    )
)


# An entry no build decodes (an op of a newer or broken build): this build records it as a
# rejected entry, the same on every replica.
UNDECODABLE = b'{"op":"naming.from_the_future","v":7}'


def poisoned_data_dir(data_dir: Path, node_id: str, poison: bytes = POISON) -> None:
    """A stopped standalone node's directory: 4 committed entries, the third one poison,
    only the first applied (the older build died applying the third on every restart)."""
    data_dir.mkdir(parents=True)
    store = open_store(data_dir / "naraft.db")
    try:
        store.set_node_id(node_id)
        entries = (
            Entry(Term(1), Index(1), b""),
            Entry(Term(1), Index(2), encode_kv(PutValue(key="before", value="1"))),
            Entry(Term(1), Index(3), poison),
            Entry(Term(1), Index(4), encode_kv(PutValue(key="after", value="2"))),
        )
        store.write(
            WriteBatch(
                hard_state=HardState(term=Term(1), voted_for=NodeId(node_id), commit=Index(4)),
                entries=entries,
                applied_index=Index(1),
            )
        )
    finally:
        store.close()


def logged_commands(data_dir: Path) -> list[bytes]:
    store = open_store(data_dir / "naraft.db")
    try:
        return [entry.command for entry in store.load().entries]  # load verifies checksums
    finally:
        store.close()


def skip(data_dir: Path, index: int, *extra: str) -> tuple[int, str]:
    done = naraft_command(
        "repair", "skip-entry", "--data-dir", str(data_dir), "--index", str(index), *extra
    )
    return done.returncode, done.stdout + done.stderr


def test_skip_entry_replaces_the_poison_with_a_noop_and_the_node_applies_the_rest(
    tmp_path: Path,
) -> None:
    (port,) = free_ports(1)
    node_id = f"127.0.0.1:{port}"
    data_dir = tmp_path / "node"
    poisoned_data_dir(data_dir, node_id)

    code, output = skip(data_dir, 3, "--dry-run")
    assert code == 0, output
    assert "entry 3 (term 1" in output
    assert "clientBeatInterval" in output
    assert logged_commands(data_dir)[2] == POISON

    code, output = skip(data_dir, 3)
    assert code == 0, output
    assert "clientBeatInterval" in output  # it shows what it replaces
    assert "replaced with a no-op (index 3, term 1 kept)" in output
    commands = logged_commands(data_dir)
    assert commands[2] == b""
    assert commands[1] != b""
    assert commands[3] != b""

    assert_node_applies_past_the_poison(node_id, data_dir)


def assert_node_applies_past_the_poison(node_id: str, data_dir: Path, faults: int = 0) -> None:
    """Start a standalone node on `data_dir`: it applies entries 2..4 and stays up."""
    node = NodeProcess(NodeSpec(node_id=node_id, standalone=True, data_dir=data_dir))
    node.start()
    try:
        with httpx.Client(timeout=2.0) as client:

            def applied() -> bool:
                try:
                    state = client.get(f"{node.url}{STATE_PATH}").json()
                except httpx.HTTPError:
                    return False
                return bool(state["appliedIndex"] >= 4)

            wait_for(applied, timeout_seconds=15, what="the node to apply its log")
            for key, value in (("before", "1"), ("after", "2")):
                answer = client.get(f"{node.url}{kv_path(key)}?consistency=local")
                assert answer.json()["value"] == value
            state = client.get(f"{node.url}{STATE_PATH}").json()
            assert state["rejectedEntries"]["fault"] == faults
            if faults:
                assert state["rejectedEntries"]["lastIndex"] == 3
                assert "undecodable" in state["rejectedEntries"]["lastDetail"]
            switches = client.get(f"{node.url}/nacos/v1/ns/operator/switches").json()
            assert switches["clientBeatInterval"] == 5000
            assert node.running
    finally:
        node.terminate()
    assert not node.tracebacks()


@pytest.mark.parametrize(
    ("poison", "faults"), [(POISON, 0), (UNDECODABLE, 1)], ids=["huge-switch", "undecodable"]
)
def test_a_node_of_this_build_survives_the_unrepaired_poison(
    tmp_path: Path, poison: bytes, faults: int
) -> None:
    (port,) = free_ports(1)
    node_id = f"127.0.0.1:{port}"
    data_dir = tmp_path / "node"
    poisoned_data_dir(data_dir, node_id, poison)
    assert_node_applies_past_the_poison(node_id, data_dir, faults)
    assert logged_commands(data_dir)[2] == poison  # refused on apply, the log kept as it was


def test_skip_entry_refuses_a_running_node_an_applied_entry_and_a_missing_one(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "node"
    poisoned_data_dir(data_dir, "127.0.0.1:1")
    fd = os.open(data_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running node holds
        code, output = skip(data_dir, 3)
        assert code == 1
        assert "a node is running" in output
    finally:
        os.close(fd)
    code, output = skip(data_dir, 1)
    assert (code, "already applied" in output) == (1, True)
    code, output = skip(data_dir, 9)
    assert (code, "not in the log" in output) == (1, True)
    code, output = skip(tmp_path / "empty-dir-does-not-exist", 3)
    assert code == 2  # click: the directory does not exist
    assert logged_commands(data_dir)[2] == POISON  # nothing changed
