"""Peer request signatures bound to what they sign, and the receiver's replay window.

Every peer request (Raft batches, digest sync, checksum reports, forwarded client beats)
carries these headers:

| header | value |
|---|---|
| `X-Naraft-Cluster` | the cluster id (without one configured, `default_cluster_id(secret)`) |
| `X-Naraft-Sender` | the sending member's id (`host:port`) |
| `X-Naraft-Recipient` | the member the request is meant for |
| `X-Naraft-Time` | the sender's wall clock, Unix milliseconds |
| `X-Naraft-Nonce` | `STREAM-COUNTER`: a random hex id per signer, and a counter from 1 |
| `X-Naraft-Signature` | hex HMAC-SHA256, under the cluster secret, of the text below |

The signed text is ten lines joined by `\\n`: `naraft-peer-1`, the method, the raw path with
its query, the cluster id, the sender, the recipient, the time, the nonce, the
Content-Encoding (`identity` when none) and the hex SHA-256 of the body **as sent** (still
gzip'd). So a receiver checks the signature before it inflates anything, and a request signed
for one route, member, cluster or moment is worth nothing anywhere else.

`PeerVerifier` refuses, each with its own `Rejection`: a missing or malformed header, another
cluster id, a sender that is not a member, a recipient that is not this node, a time outside
the replay window (±30 s by default), a wrong signature, and a nonce it already took. For the
last it keeps, per sender and stream, the highest counter seen and which of the 4,096 below it
came (a sliding window, as IPsec's anti-replay): a request is taken at most once, in any order
within the window. A stream whose newest request is older than the time window is forgotten,
since every request of it would now be refused as stale anyway.

Without a secret (single-node setups and tests) requests are not signed and not checked.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final

from naraft.transport import auth
from naraft.transport.members import MemberView

SIGNATURE_HEADER: Final = auth.SIGNATURE_HEADER
CLUSTER_HEADER: Final = "X-Naraft-Cluster"
SENDER_HEADER: Final = "X-Naraft-Sender"
RECIPIENT_HEADER: Final = "X-Naraft-Recipient"
TIME_HEADER: Final = "X-Naraft-Time"
NONCE_HEADER: Final = "X-Naraft-Nonce"
SIGNED_HEADERS: Final = (
    CLUSTER_HEADER,
    SENDER_HEADER,
    RECIPIENT_HEADER,
    TIME_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
)
SIGNING_VERSION: Final = "naraft-peer-1"
DEFAULT_WINDOW_MS: Final = 30_000
REPLAY_WINDOW_COUNTERS: Final = 4096  # how far behind the newest counter a request may arrive
MAX_STREAMS_PER_SENDER: Final = 64  # live signers of one member (each process has a few)
IDENTITY: Final = "identity"

_STREAM: Final = re.compile(r"[0-9a-f]{1,32}")
_DIGITS: Final = re.compile(r"[0-9]{1,18}")  # below 2**63: counters and Unix milliseconds
_MAX_ID_CHARS: Final = 256

Clock = Callable[[], int]
"""Unix milliseconds."""


def wall_clock_ms() -> int:
    """The wall clock in Unix milliseconds: what `X-Naraft-Time` carries."""
    return int(time.time() * 1000)  # noqa: TID251 - peer signatures carry wall-clock time


def default_cluster_id(secret: bytes | None) -> str:
    """The cluster id when none is configured: derived from the secret (never revealing it)."""
    if secret is None:
        return "standalone"
    return "s-" + hashlib.sha256(b"naraft-cluster-id\0" + secret).hexdigest()[:16]


class Rejection(enum.StrEnum):
    """Why a peer request, or one envelope of a batch, was not taken."""

    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE = "bad_signature"
    CLUSTER_MISMATCH = "cluster_mismatch"
    STALE = "stale"
    REPLAYED = "replayed"
    UNDECODABLE = "undecodable"
    TOO_LARGE = "too_large"
    UNKNOWN_SENDER = "unknown_sender"
    WRONG_RECIPIENT = "wrong_recipient"
    SENDER_MISMATCH = "sender_mismatch"  # an envelope names a sender other than the request's
    INCOMPATIBLE = "incompatible"  # the sender's peer protocol range shares no version with ours


class SignatureError(Exception):
    """A request's signature headers do not hold: `reason` classifies, `detail` explains."""

    def __init__(self, reason: Rejection, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """What a request's headers claim; the body's hash completes what was signed."""

    method: str
    path: str
    cluster: str
    sender: str
    recipient: str
    time_ms: int
    stream: str
    counter: int
    encoding: str
    signature: str

    @property
    def nonce(self) -> str:
        return f"{self.stream}-{self.counter}"

    def signed_text(self, body: bytes) -> bytes:
        """The text the signature covers, for a body of `body` (as sent)."""
        return "\n".join(
            (
                SIGNING_VERSION,
                self.method.upper(),
                self.path,
                self.cluster,
                self.sender,
                self.recipient,
                str(self.time_ms),
                self.nonce,
                self.encoding,
                hashlib.sha256(body).hexdigest(),
            )
        ).encode("utf-8")


class PeerSigner:
    """Signs the requests of one sending stream (one per component: a fresh nonce stream)."""

    def __init__(
        self,
        secret: bytes | None,
        *,
        cluster_id: str,
        self_id: str,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self._secret = secret
        self._cluster_id = cluster_id
        self._self_id = self_id
        self._clock = clock
        self._stream = secrets.token_hex(8)
        self._counter = 0

    @property
    def cluster_id(self) -> str:
        return self._cluster_id

    def headers(
        self, method: str, path: str, recipient: str, body: bytes, *, encoding: str | None = None
    ) -> dict[str, str]:
        """The headers of one request, `body` being the bytes sent (compressed if they are).

        Each call takes a fresh nonce, so a request sent again must be signed again.
        """
        headers = {SENDER_HEADER: self._self_id}
        if self._secret is None:
            return headers
        self._counter += 1
        claim = Claim(
            method=method,
            path=path,
            cluster=self._cluster_id,
            sender=self._self_id,
            recipient=recipient,
            time_ms=self._clock(),
            stream=self._stream,
            counter=self._counter,
            encoding=encoding or IDENTITY,
            signature="",
        )
        headers.update(
            {
                CLUSTER_HEADER: claim.cluster,
                RECIPIENT_HEADER: claim.recipient,
                TIME_HEADER: str(claim.time_ms),
                NONCE_HEADER: claim.nonce,
                SIGNATURE_HEADER: auth.sign(self._secret, claim.signed_text(body)),
            }
        )
        return headers


class PeerVerifier:
    """Checks signed peer requests for one receiving node; see the module docstring.

    Use `claim` on the headers before reading the body, then `admit` on the body as it came
    (before decompressing it). Without a secret both accept everything.
    """

    def __init__(
        self,
        secret: bytes | None,
        *,
        cluster_id: str,
        self_id: str | None,
        members: Collection[str],
        window_ms: int = DEFAULT_WINDOW_MS,
        clock: Clock = wall_clock_ms,
    ) -> None:
        if window_ms < 1:
            raise ValueError(f"window_ms must be >= 1, got {window_ms}")
        self._secret = secret
        self._cluster_id = cluster_id
        self._self_id = self_id
        # A `MemberView` is read as it changes (membership changes); anything else is copied.
        self._members: Collection[str] = (
            members if isinstance(members, MemberView) else frozenset(members)
        )
        self._window_ms = window_ms
        self._clock = clock
        self._streams: dict[str, dict[str, _Window]] = {}  # sender -> stream -> window

    @property
    def enabled(self) -> bool:
        return self._secret is not None

    def claim(self, method: str, path: str, headers: Mapping[str, str]) -> Claim | None:
        """The request's claim if its headers hold (None without a secret).

        Raises `SignatureError` for a missing or malformed header, another cluster, a
        stranger, another recipient or a stale time. The signature itself is `admit`'s.
        """
        if self._secret is None:
            return None
        values = {name: headers.get(name) for name in SIGNED_HEADERS}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise SignatureError(Rejection.MISSING_SIGNATURE, f"missing {', '.join(missing)}")
        cluster = _short(values[CLUSTER_HEADER])
        if cluster != self._cluster_id:
            raise SignatureError(
                Rejection.CLUSTER_MISMATCH,
                f"cluster id {cluster!r} is not this cluster's {self._cluster_id!r}",
            )
        sender = _short(values[SENDER_HEADER])
        if sender not in self._members:
            raise SignatureError(Rejection.UNKNOWN_SENDER, f"sender {sender!r} is not a member")
        recipient = _short(values[RECIPIENT_HEADER])
        if self._self_id is not None and recipient != self._self_id:
            raise SignatureError(
                Rejection.WRONG_RECIPIENT, f"meant for {recipient!r}, not {self._self_id!r}"
            )
        time_text = values[TIME_HEADER] or ""
        stream, _, counter_text = (values[NONCE_HEADER] or "").partition("-")
        if not (
            _DIGITS.fullmatch(time_text)
            and _STREAM.fullmatch(stream)
            and _DIGITS.fullmatch(counter_text)
        ):
            raise SignatureError(Rejection.BAD_SIGNATURE, "malformed time or nonce")
        time_ms = int(time_text)
        skew = time_ms - self._clock()
        if abs(skew) > self._window_ms:
            raise SignatureError(
                Rejection.STALE,
                f"signed {skew / 1000:+.1f} s from now (window ±{self._window_ms} ms)",
            )
        return Claim(
            method=method,
            path=path,
            cluster=cluster,
            sender=sender,
            recipient=recipient,
            time_ms=time_ms,
            stream=stream,
            counter=int(counter_text),
            encoding=(headers.get("Content-Encoding") or IDENTITY).strip().lower(),
            signature=(values[SIGNATURE_HEADER] or "").strip(),
        )

    def admit(self, claim: Claim | None, body: bytes) -> None:
        """Check the signature of `claim` over `body` (as received), then take its nonce.

        Raises `SignatureError` for a wrong signature or a nonce already taken.
        """
        if self._secret is None or claim is None:
            return
        if not auth.verify(self._secret, claim.signed_text(body), claim.signature):
            raise SignatureError(Rejection.BAD_SIGNATURE, "does not sign this request")
        if not self._take(claim):
            raise SignatureError(Rejection.REPLAYED, f"nonce {claim.nonce} already taken")

    def _take(self, claim: Claim) -> bool:
        now = self._clock()
        streams = self._streams.setdefault(claim.sender, {})
        window = streams.get(claim.stream)
        if window is None:
            for stream in [s for s, w in streams.items() if w.newest_ms < now - self._window_ms]:
                del streams[stream]
            if len(streams) >= MAX_STREAMS_PER_SENDER:
                return False
            window = streams[claim.stream] = _Window()
        return window.take(claim.counter, claim.time_ms)


class _Window:
    """The counters taken from one stream: the highest, and a bitmap of those just below."""

    __slots__ = ("bits", "highest", "newest_ms")

    def __init__(self) -> None:
        self.highest = 0
        self.bits = 1  # bit i: counter highest - i was taken (0 is never sent)
        self.newest_ms = 0

    def take(self, counter: int, time_ms: int) -> bool:
        if counter > self.highest:
            shift = counter - self.highest
            if shift >= REPLAY_WINDOW_COUNTERS:
                self.bits = 1
            else:
                self.bits = ((self.bits << shift) | 1) & ((1 << REPLAY_WINDOW_COUNTERS) - 1)
            self.highest = counter
        else:
            offset = self.highest - counter
            if offset >= REPLAY_WINDOW_COUNTERS or (self.bits >> offset) & 1:
                return False
            self.bits |= 1 << offset
        self.newest_ms = max(self.newest_ms, time_ms)
        return True


def _short(value: str | None) -> str:
    """A header value fit for a comparison and a log line."""
    return (value or "").strip()[:_MAX_ID_CHARS]
