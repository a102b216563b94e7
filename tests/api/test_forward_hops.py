"""How many times a request is forwarded to a leader: once, and a second time only when
the leader it reached handed leadership over while it waited."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from naraft.api.forward import FORWARDED_HEADER, _may_forward
from naraft.raft import HandedOverError, NodeId, NotLeaderError


@pytest.mark.parametrize(
    ("forwarded_by", "error", "allowed"),
    [
        (None, NotLeaderError(NodeId("b:1")), True),
        (None, HandedOverError(NodeId("b:1")), True),
        ("a:1", NotLeaderError(NodeId("b:1")), False),  # a follower's forward met a follower
        ("a:1", HandedOverError(NodeId("b:1")), True),  # the old leader handed over meanwhile
        ("a:1,c:1", HandedOverError(NodeId("b:1")), False),  # never a third hop
    ],
)
def test_forward_hops(forwarded_by: str | None, error: NotLeaderError, allowed: bool) -> None:
    headers = {} if forwarded_by is None else {FORWARDED_HEADER: forwarded_by}
    request = make_mocked_request("PUT", "/naraft/v1/kv/k", headers=headers)
    assert _may_forward(request, error) is allowed
