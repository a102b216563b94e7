"""`GET /naraft/v1/snapshot`: the applied state as a snapshot file (`naraft snapshot save`).

Admin only (`api/access.py`). Consistent at a committed index: the node first passes the read
barrier (Raft's read index: a majority confirms the leader, and the leader has applied
everything committed when the request came), then freezes its applied state in one step (no
await between reading the applied point and copying the datums), and streams that frozen copy
while writes go on. Only the leader passes the barrier; a follower answers 503 with
`"leader"`, and `naraft snapshot save` asks the leader instead (one hop; the follower does not
proxy it, so the state is never held whole in anyone's memory on the way).

The body is the format of `naraft.digest.snapshot_file`, written frame by frame (about 1 MiB
each, encoded off the event loop); the headers carry the index and the key count.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Final, Protocol

from aiohttp import web

from naraft.api.errors import Refusal, json_refusal
from naraft.digest.server import FrozenState
from naraft.digest.snapshot_file import MEDIA_TYPE, SnapshotHeader, SnapshotWriter, frame_batches
from naraft.errors import DiskFullError, UnavailableError
from naraft.raft import NotLeaderError

logger = logging.getLogger(__name__)

SNAPSHOT_PATH: Final = "/naraft/v1/snapshot"


class SnapshotSource(Protocol):
    """What the route needs of the node."""

    @property
    def self_id(self) -> str: ...

    @property
    def cluster_id(self) -> str: ...

    async def read_barrier(self) -> None: ...

    def freeze_state(self) -> FrozenState: ...

    def now_ms(self) -> int:
        """Wall-clock milliseconds (the node's one clock): the file's `createdMs`."""
        ...


SNAPSHOT: Final = web.AppKey("snapshot_source", SnapshotSource)


async def save_snapshot(request: web.Request) -> web.StreamResponse:
    source = request.app[SNAPSHOT]
    try:
        await source.read_barrier()
    except NotLeaderError as error:
        return json_refusal(
            Refusal.UNAVAILABLE, "not the leader: ask the leader", leader=error.leader_hint
        )
    except DiskFullError as error:
        return json_refusal(Refusal.NO_SPACE, str(error), reason="disk-full")
    except UnavailableError as error:
        return json_refusal(Refusal.UNAVAILABLE, str(error), leader=None)
    frozen = source.freeze_state()  # no await since the barrier: the state at its applied point
    keys = await asyncio.to_thread(sorted, frozen.datums)
    writer = SnapshotWriter(
        SnapshotHeader(
            index=frozen.point.index,
            term=frozen.point.term,
            keys=len(keys),
            state_checksum=frozen.checksum,
            cluster_id=source.cluster_id,
            node=source.self_id,
            snapshot_id=secrets.token_hex(16),
            created_ms=source.now_ms(),
        )
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": MEDIA_TYPE,
            "X-Naraft-Snapshot-Index": str(frozen.point.index),
            "X-Naraft-Snapshot-Keys": str(len(keys)),
        }
    )
    await response.prepare(request)
    await response.write(writer.start())
    for batch in frame_batches(keys, frozen.datums):
        await response.write(await asyncio.to_thread(writer.frame, batch))
    await response.write(writer.end())
    await response.write_eof()
    logger.info(
        "served a snapshot at %d/%d: %d keys", frozen.point.index, frozen.point.term, len(keys)
    )
    return response


def snapshot_routes() -> list[web.RouteDef]:
    return [web.get(SNAPSHOT_PATH, save_snapshot)]
