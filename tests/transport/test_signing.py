"""Peer signatures bind every field they claim; the receiver's replay window takes a request
at most once and refuses stale ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from naraft.transport import (
    Claim,
    PeerSigner,
    PeerVerifier,
    Rejection,
    SignatureError,
    default_cluster_id,
)
from naraft.transport.signing import (
    CLUSTER_HEADER,
    MAX_STREAMS_PER_SENDER,
    NONCE_HEADER,
    RECIPIENT_HEADER,
    REPLAY_WINDOW_COUNTERS,
    SENDER_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
)

SECRET = b"a-cluster-secret-of-some-length"
CLUSTER = "cluster-a"
PATH = "/nacos/v1/ns/raft/messages"
BODY = b'{"v":1,"e":[]}'
NOW_MS = 1_800_000_000_000
WINDOW_MS = 30_000


class FakeClock:
    def __init__(self, now_ms: int = NOW_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def signer(
    *, self_id: str = "n1", secret: bytes = SECRET, clock: Callable[[], int] | None = None
) -> PeerSigner:
    return PeerSigner(secret, cluster_id=CLUSTER, self_id=self_id, clock=clock or FakeClock())


def verifier(clock: FakeClock | None = None) -> PeerVerifier:
    return PeerVerifier(
        SECRET,
        cluster_id=CLUSTER,
        self_id="n2",
        members={"n1", "n3"},
        window_ms=WINDOW_MS,
        clock=clock or FakeClock(),
    )


def check(
    v: PeerVerifier,
    headers: dict[str, str],
    *,
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
) -> Claim | None:
    claim = v.claim(method, path, headers)
    v.admit(claim, body)
    return claim


def refusal(v: PeerVerifier, headers: dict[str, str], **request: Any) -> Rejection:
    """The reason `check` raises."""
    with pytest.raises(SignatureError) as caught:
        check(v, headers, **request)
    return caught.value.reason


def test_a_signed_request_is_taken_with_what_it_claims() -> None:
    headers = signer().headers("POST", PATH, "n2", BODY)
    claim = check(verifier(), headers)
    assert claim is not None
    assert (claim.cluster, claim.sender, claim.recipient, claim.time_ms) == (
        CLUSTER,
        "n1",
        "n2",
        NOW_MS,
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"method": "PUT"}, Rejection.BAD_SIGNATURE, id="method"),
        pytest.param({"path": "/nacos/v1/ns/raft/datums"}, Rejection.BAD_SIGNATURE, id="path"),
        pytest.param({"body": BODY + b" "}, Rejection.BAD_SIGNATURE, id="body"),
        pytest.param({CLUSTER_HEADER: "cluster-b"}, Rejection.CLUSTER_MISMATCH, id="cluster"),
        pytest.param({SENDER_HEADER: "n3"}, Rejection.BAD_SIGNATURE, id="sender"),
        pytest.param({SENDER_HEADER: "n9"}, Rejection.UNKNOWN_SENDER, id="stranger"),
        pytest.param({RECIPIENT_HEADER: "n3"}, Rejection.WRONG_RECIPIENT, id="recipient"),
        pytest.param({TIME_HEADER: str(NOW_MS + 1)}, Rejection.BAD_SIGNATURE, id="time"),
        pytest.param({NONCE_HEADER: "00-1"}, Rejection.BAD_SIGNATURE, id="nonce"),
        pytest.param({"Content-Encoding": "gzip"}, Rejection.BAD_SIGNATURE, id="encoding"),
        pytest.param({SIGNATURE_HEADER: "0" * 64}, Rejection.BAD_SIGNATURE, id="signature"),
        pytest.param({TIME_HEADER: "soon"}, Rejection.BAD_SIGNATURE, id="malformed-time"),
        pytest.param({NONCE_HEADER: "zz-1"}, Rejection.BAD_SIGNATURE, id="malformed-nonce"),
        pytest.param({NONCE_HEADER: "ab-" + "9" * 40}, Rejection.BAD_SIGNATURE, id="huge-counter"),
        pytest.param({TIME_HEADER: ""}, Rejection.MISSING_SIGNATURE, id="no-time"),
        pytest.param({SIGNATURE_HEADER: ""}, Rejection.MISSING_SIGNATURE, id="no-signature"),
    ],
)
def test_changing_any_bound_field_is_refused(change: dict[str, Any], reason: Rejection) -> None:
    headers = signer().headers("POST", PATH, "n2", BODY)
    request = {k: v for k, v in change.items() if k in ("method", "path", "body")}
    headers.update({k: v for k, v in change.items() if k not in request})
    assert refusal(verifier(), headers, **request) is reason


def test_another_secret_is_refused() -> None:
    headers = signer(secret=b"another-secret-entirely").headers("POST", PATH, "n2", BODY)
    assert refusal(verifier(), headers) is Rejection.BAD_SIGNATURE


@pytest.mark.parametrize("skew_ms", [-WINDOW_MS - 1, WINDOW_MS + 1], ids=["old", "future"])
def test_a_time_outside_the_window_is_refused_as_stale(skew_ms: int) -> None:
    headers = signer(clock=FakeClock(NOW_MS + skew_ms)).headers("POST", PATH, "n2", BODY)
    assert refusal(verifier(), headers) is Rejection.STALE


@pytest.mark.parametrize("skew_ms", [-WINDOW_MS, WINDOW_MS], ids=["oldest", "latest"])
def test_a_time_at_the_edge_of_the_window_is_taken(skew_ms: int) -> None:
    headers = signer(clock=FakeClock(NOW_MS + skew_ms)).headers("POST", PATH, "n2", BODY)
    assert check(verifier(), headers) is not None


def test_an_exact_replay_is_refused_and_a_fresh_signature_is_taken() -> None:
    v, s = verifier(), signer()
    headers = s.headers("POST", PATH, "n2", BODY)
    check(v, headers)
    assert refusal(v, headers) is Rejection.REPLAYED
    check(v, s.headers("POST", PATH, "n2", BODY))  # the same body, signed again


def test_requests_may_arrive_out_of_order_within_the_counter_window() -> None:
    v, s = verifier(), signer()
    signed = [s.headers("POST", PATH, "n2", BODY) for _ in range(10)]
    for headers in reversed(signed):
        check(v, headers)
    for headers in signed:
        assert refusal(v, headers) is Rejection.REPLAYED


def test_a_counter_too_far_behind_the_newest_is_refused() -> None:
    v, s = verifier(), signer()
    first = s.headers("POST", PATH, "n2", BODY)
    for _ in range(REPLAY_WINDOW_COUNTERS):
        s.headers("POST", PATH, "n2", BODY)  # signed, never delivered
    check(v, s.headers("POST", PATH, "n2", BODY))
    assert refusal(v, first) is Rejection.REPLAYED


def test_streams_of_one_sender_are_independent_and_forgotten_once_stale() -> None:
    clock = FakeClock()
    v = verifier(clock)
    a, b = signer(clock=clock), signer(clock=clock)
    first = a.headers("POST", PATH, "n2", BODY)
    check(v, first)
    check(v, b.headers("POST", PATH, "n2", BODY))  # counter 1 too, another stream
    clock.now_ms += WINDOW_MS + 1
    # Forgotten or not, the old request is now stale: it can never come back.
    assert refusal(v, first) is Rejection.STALE
    check(v, a.headers("POST", PATH, "n2", BODY))


def test_a_sender_with_too_many_live_streams_is_refused() -> None:
    v = verifier()
    for _ in range(MAX_STREAMS_PER_SENDER):
        check(v, signer().headers("POST", PATH, "n2", BODY))
    assert refusal(v, signer().headers("POST", PATH, "n2", BODY)) is Rejection.REPLAYED
    # Other senders keep their own budget.
    check(v, signer(self_id="n3").headers("POST", PATH, "n2", BODY))


def test_without_a_secret_nothing_is_signed_or_checked() -> None:
    s = PeerSigner(None, cluster_id="x", self_id="n1")
    assert s.headers("POST", PATH, "n2", BODY) == {SENDER_HEADER: "n1"}
    v = PeerVerifier(None, cluster_id="x", self_id="n2", members=())
    assert v.claim("POST", PATH, {}) is None
    v.admit(None, BODY)


def test_the_default_cluster_id_depends_on_the_secret_and_does_not_reveal_it() -> None:
    first, second = default_cluster_id(SECRET), default_cluster_id(b"another")
    assert first != second
    assert first == default_cluster_id(SECRET)
    assert SECRET.decode() not in first
