"""The gate before a command a newer build adds (`naraft.upgrade`): it lets the command go
once the cluster records the version, records it on the leader only when every member is
known to speak it, and otherwise refuses naming who holds the upgrade back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from naraft.errors import UpgradeUnfinishedError
from naraft.machine import NodeStateMachine
from naraft.naming.service import UPDATE_CLUSTER_SINCE, UPDATE_METADATA_SINCE
from naraft.naming.state import NamingState
from naraft.raft import NO_SNAPSHOT, Entry, Index, NodeId, NotLeaderError, Role, Status, Term
from naraft.raft.membership import Membership
from naraft.state.datums import DatumTable
from naraft.transport.version import COMMANDS_VERSION, CURRENT, ProtocolRange
from naraft.upgrade import ClusterVersionGate

N1, N2, N3 = NodeId("n1"), NodeId("n2"), NodeId("n3")
NEW = ProtocolRange(1, 3)
OLD = ProtocolRange(1, 2)


class Cluster:
    """One leader's view: its state machine (proposals apply to it at once), its status,
    and the ranges its peer streams heard."""

    def __init__(self, *, role: Role = Role.LEADER) -> None:
        datums = DatumTable()
        self.machine = NodeStateMachine(datums, NamingState(datums))
        self.status = Status(
            id=N1, role=role, term=Term(1), voted_for=None,
            leader=N1 if role is Role.LEADER else None, commit_index=Index(0),
            applied_index=Index(0), last_index=Index(0), last_term=Term(1),
            persisted_index=Index(0), snapshot=NO_SNAPSHOT, peers={},
            membership=Membership.of([N1, N2, N3]),
        )  # fmt: skip
        self.ranges: dict[NodeId, ProtocolRange | None] = {N2: NEW, N3: NEW}
        self.proposed: list[bytes] = []

    async def propose(self, command: bytes) -> object:
        self.proposed.append(command)
        index = Index(len(self.proposed))
        return self.machine.apply(Entry(Term(1), index, command))

    def gate(self, own: ProtocolRange = NEW) -> ClusterVersionGate:
        return ClusterVersionGate(
            self_id=N1,
            own=own,
            recorded=lambda: self.machine.cluster_version,
            status=lambda: self.status,
            peer_range=self.ranges.get,
            propose=self.propose,
        )


async def test_the_leader_records_the_version_once_when_every_member_speaks_it() -> None:
    cluster = Cluster()
    gate = cluster.gate()
    await gate.require(3, "batch metadata")
    assert cluster.machine.cluster_version == 3
    await gate.require(3, "batch metadata")  # recorded: nothing more to propose
    await gate.require(2, "an older command")
    assert len(cluster.proposed) == 1


@pytest.mark.parametrize(
    ("n3", "named"),
    [
        pytest.param(OLD, "n3 (speaks 1..2)", id="an-older-build"),
        pytest.param(None, "n3 (no peer stream open: down, or an older build)", id="unknown"),
    ],
)
async def test_a_member_not_known_to_speak_it_holds_the_upgrade_back(
    n3: ProtocolRange | None, named: str
) -> None:
    cluster = Cluster()
    cluster.ranges[N3] = n3
    with pytest.raises(UpgradeUnfinishedError, match=r"not yet: n3 \(") as raised:
        await cluster.gate().require(3, "batch metadata")
    assert named in str(raised.value)
    assert "n2" not in str(raised.value)
    assert cluster.proposed == []
    assert cluster.machine.cluster_version == 1


async def test_a_learner_counts_as_a_member() -> None:
    cluster = Cluster()
    n4 = NodeId("n4")
    cluster.status = replace(cluster.status, membership=Membership.of([N1, N2, N3], [n4]))
    with pytest.raises(UpgradeUnfinishedError, match="n4"):
        await cluster.gate().require(3, "batch metadata")
    cluster.ranges[n4] = NEW
    await cluster.gate().require(3, "batch metadata")
    assert cluster.machine.cluster_version == 3


async def test_a_follower_does_not_record_and_sends_the_request_to_the_leader() -> None:
    cluster = Cluster(role=Role.FOLLOWER)
    cluster.status = replace(cluster.status, leader=N2)
    with pytest.raises(NotLeaderError) as raised:  # the API forwards it there
        await cluster.gate().require(3, "batch metadata")
    assert raised.value.leader_hint == N2
    assert cluster.proposed == []
    # once recorded (by the leader's entry), a follower lets the command go
    cluster.machine.apply(Entry(Term(1), Index(1), b'{"op":"meta.cluster_version","version":3}'))
    await cluster.gate().require(3, "batch metadata")


async def test_a_node_standing_in_for_an_older_build_never_records_it() -> None:
    cluster = Cluster()
    with pytest.raises(UpgradeUnfinishedError, match="this node speaks 1..2"):
        await cluster.gate(own=OLD).require(3, "batch metadata")
    assert cluster.proposed == []


def test_this_build_speaks_the_version_each_of_its_commands_needs() -> None:
    """The naming service names the version each of its new commands came with; the
    transport names the range this build claims. A build whose range stopped short of a
    command's version could never propose it (and would refuse peers that record it)."""
    assert CURRENT.high >= COMMANDS_VERSION >= UPDATE_CLUSTER_SINCE > UPDATE_METADATA_SINCE
