"""The gate before a command a newer build adds: proposed only once every member reads it.

Every member applies every committed entry, so one running a build that cannot decode an
entry would reject it while the others apply it, and their states would part. A build that
adds a command therefore raises the peer protocol version (`naraft.transport.version`)
and proposes the command only through `ClusterVersionGate.require`:

1. The replicated state records the version every member speaks (`cluster_version`, 1
   while none is recorded). At or above the command's version, the command may go.
2. Below it, the leader raises the record itself, but only if every member of the
   configuration (voters and learners) has named a range reaching the version on a peer
   stream open now. A member that is down, or whose range is unknown, holds the upgrade
   back: the request is refused (`UpgradeUnfinishedError`, 503) naming who.
3. Once recorded, the version is the peer protocol's floor: a peer that does not speak it
   is refused in both directions (`version_floor` of the transport), so a member cannot go
   back to a build that cannot read the log, and a new member must run a build that can.

The record is raised lazily, by the first request that needs it, so a cluster that never
uses a new command never writes one; as etcd's cluster version, it is never lowered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from naraft.errors import UpgradeUnfinishedError
from naraft.machine import encode_raise_cluster_version
from naraft.raft import NodeId, NotLeaderError, Role, Status
from naraft.transport.version import ProtocolRange, meets_floor


class ClusterVersionGate:
    """`require(version, what)` returns once the cluster records `version`, raising it first
    when this node leads and every member speaks it. Otherwise it raises NotLeaderError on a
    follower (the API forwards the request to the leader) and UpgradeUnfinishedError on the
    leader."""

    def __init__(
        self,
        *,
        self_id: NodeId,
        own: ProtocolRange,
        recorded: Callable[[], int],
        status: Callable[[], Status],
        peer_range: Callable[[NodeId], ProtocolRange | None],
        propose: Callable[[bytes], Awaitable[object]],
    ) -> None:
        self._self_id = self_id
        self._own = own
        self._recorded = recorded
        self._status = status
        self._peer_range = peer_range
        self._propose = propose

    async def require(self, version: int, what: str) -> None:
        if self._recorded() >= version:
            return
        if not self._own.high >= version:  # a build standing in for an older one (tests)
            raise UpgradeUnfinishedError(
                f"{what} needs peer protocol {version}; this node speaks {self._own}"
            )
        status = self._status()
        if status.role is not Role.LEADER:
            # only the leader records it: the request goes there, as a write would
            raise NotLeaderError(status.leader)
        behind = self.behind(version)
        if behind:
            raise UpgradeUnfinishedError(
                f"{what} needs peer protocol {version} on every member; not yet: "
                + ", ".join(behind)
                + ". Finish the rolling upgrade (every member up and running a build that"
                " speaks it), then retry"
            )
        await self._propose(encode_raise_cluster_version(version))
        if self._recorded() < version:  # applied, but a concurrent record said otherwise
            raise UpgradeUnfinishedError(f"{what}: the cluster did not record version {version}")

    def behind(self, version: int) -> list[str]:
        """The members not known to speak `version`, each with what is known of it."""
        membership = self._status().membership
        members = sorted(membership.members) if membership is not None else [self._self_id]
        behind = []
        for member in members:
            theirs = self._own if member == self._self_id else self._peer_range(member)
            if theirs is None:
                behind.append(f"{member} (no peer stream open: down, or an older build)")
            elif not meets_floor(theirs, version):
                behind.append(f"{member} (speaks {theirs})")
        return behind
