"""`GET /naraft/v1/snapshot`: the state frozen right after the read barrier, streamed in the
snapshot file format; a follower names the leader instead."""

from __future__ import annotations

import io

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from naraft.api.snapshot import SNAPSHOT, SNAPSHOT_PATH, snapshot_routes
from naraft.digest.checksum import StateChecksum
from naraft.digest.server import FrozenState, freeze_state
from naraft.digest.snapshot_file import FRAME_TARGET_BYTES, MEDIA_TYPE, SnapshotReader
from naraft.errors import UnavailableError
from naraft.raft import Index, NodeId, NotLeaderError, SnapshotMeta, Term
from naraft.state.datums import Datum, DatumTable

Client = TestClient[web.Request, web.Application]


class FakeSource:
    """A leader whose table moves on right after each freeze (a write applied while the
    snapshot streams)."""

    def __init__(self, table: DatumTable, *, refuse: Exception | None = None) -> None:
        self.table = table
        self.checksum = StateChecksum(table.items(), 7)
        self.refuse = refuse
        self.self_id = "127.0.0.1:8848"
        self.cluster_id = "0123456789abcdef"

    async def read_barrier(self) -> None:
        if self.refuse is not None:
            raise self.refuse

    def freeze_state(self) -> FrozenState:
        point = SnapshotMeta(index=Index(7), term=Term(2))
        frozen = freeze_state(point, self.table, self.checksum, hashes=False)
        self.table.put("late", b"after the freeze", 8)
        return frozen

    def now_ms(self) -> int:
        return 1_700_000_000_000


async def client_for(source: FakeSource) -> Client:
    app = web.Application()
    app.add_routes(snapshot_routes())
    app[SNAPSHOT] = source
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_the_leader_streams_its_state_at_the_barrier() -> None:
    big = b"x" * 1000
    datums = {f"key-{i:05d}": Datum(big, i % 7 + 1) for i in range(3 * FRAME_TARGET_BYTES // 1000)}
    client = await client_for(FakeSource(DatumTable(datums)))
    try:
        answer = await client.get(SNAPSHOT_PATH)
        assert answer.status == 200
        assert answer.headers["Content-Type"] == MEDIA_TYPE
        assert answer.headers["X-Naraft-Snapshot-Index"] == "7"
        reader = SnapshotReader(io.BytesIO(await answer.read()))
        frames = list(reader.frames())
    finally:
        await client.close()
    assert len(frames) >= 3  # cut into frames of about 1 MiB
    assert {k: d for rows in frames for k, d in rows} == datums  # not the late write
    header = reader.header
    assert (header.index, header.term, header.keys) == (7, 2, len(datums))
    assert header.cluster_id == "0123456789abcdef"
    assert header.node == "127.0.0.1:8848"
    assert header.created_ms == 1_700_000_000_000


@pytest.mark.parametrize(
    ("refusal", "status", "body"),
    [
        pytest.param(
            NotLeaderError(NodeId("127.0.0.1:8849")),
            503,
            {"error": "not the leader: ask the leader", "leader": "127.0.0.1:8849"},
            id="follower",
        ),
        pytest.param(
            UnavailableError("no quorum confirmed the read in time"),
            503,
            {"error": "no quorum confirmed the read in time", "leader": None},
            id="no-quorum",
        ),
    ],
)
async def test_a_node_that_cannot_pass_the_barrier_says_why(
    refusal: Exception, status: int, body: dict[str, object]
) -> None:
    client = await client_for(FakeSource(DatumTable({"a": Datum(b"1", 1)}), refuse=refusal))
    try:
        answer = await client.get(SNAPSHOT_PATH)
        assert answer.status == status
        assert await answer.json() == body
    finally:
        await client.close()
