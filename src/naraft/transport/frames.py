"""Peer streams: the frames a lane's long-lived connection carries.

Each lane of a peer (`client.Lane`) keeps one WebSocket open to the peer: the upgrade is
`GET STREAM_PATH?lane=control|bulk`, signed like every peer request (over an empty body, see
`signing`) and naming the sender's protocol range (`version`). From then on every batch is
one binary message, and nothing travels back but WebSocket pings, pongs and the close:

    2 bytes: the length of AUTH, big-endian | AUTH (ASCII) | the batch as sent

AUTH is the batch's content encoding (`identity` or `gzip`) alone when the cluster has no
secret, else `ENCODING TIME NONCE SIGNATURE`: a signature made with method `FRAME` over the
stream's path (with its query), the recipient, the time, a fresh nonce and the batch as sent.
The receiver takes cluster, sender and recipient from the upgrade it checked, so every frame
is checked as a whole request would be (membership, time window, signature, replay) before
anything in it is inflated. A frame that does not hold closes the stream (policy violation,
with the reason); the sender reconnects with its next batch. The upgrade's answer names the
largest frame the receiver takes (`X-Naraft-Max-Frame`), so that a sender refuses a batch
over it itself instead of losing the stream and what follows it on the wire, and the peer
protocol range it speaks (`X-Naraft-Protocol`), from which the sender picks the format of
the stream's batches (`version.batch_format`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from naraft.transport.codec import CodecError
from naraft.transport.signing import (
    IDENTITY,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
    PeerSigner,
)

STREAM_PATH: Final = "/nacos/v1/ns/raft/stream"
MAX_FRAME_HEADER: Final = "X-Naraft-Max-Frame"  # the upgrade's answer: the largest frame taken
FRAME_METHOD: Final = "FRAME"  # what a frame's signature names as its method
MAX_AUTH_BYTES: Final = 512  # far above an encoding, a time, a nonce and a hex HMAC
_ENCODINGS: Final = frozenset({IDENTITY, "gzip"})


def stream_path(lane: str) -> str:
    """The path (and query) a lane's stream opens and its frames are signed for."""
    return f"{STREAM_PATH}?lane={lane}"


def encode_frame(
    signer: PeerSigner, path: str, recipient: str, wire: bytes, encoding: str | None
) -> bytes:
    """One batch (`wire`, as sent) as a frame signed by `signer` for `recipient`."""
    signed = signer.headers(FRAME_METHOD, path, recipient, wire, encoding=encoding)
    fields = [encoding or IDENTITY]
    if SIGNATURE_HEADER in signed:
        fields += [signed[TIME_HEADER], signed[NONCE_HEADER], signed[SIGNATURE_HEADER]]
    auth = " ".join(fields).encode("ascii")
    return len(auth).to_bytes(2, "big") + auth + wire


def decode_frame(frame: bytes) -> tuple[str, Mapping[str, str], bytes]:
    """A frame's encoding, its signature headers (none when unsigned) and its batch as
    sent. Raises `CodecError` naming what is malformed."""
    if len(frame) < 2:
        raise CodecError("frame", "shorter than its header")
    size = int.from_bytes(frame[:2], "big")
    if size > MAX_AUTH_BYTES or len(frame) < 2 + size:
        raise CodecError("frame", f"header length {size} is out of bounds")
    try:
        fields = frame[2 : 2 + size].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise CodecError("frame", "header is not ASCII") from None
    encoding = fields[0]
    if encoding not in _ENCODINGS:
        raise CodecError("frame", f"unsupported encoding {encoding[:32]!r}")
    if len(fields) == 1:
        headers: Mapping[str, str] = {}
    elif len(fields) == 4:
        headers = {TIME_HEADER: fields[1], NONCE_HEADER: fields[2], SIGNATURE_HEADER: fields[3]}
    else:
        raise CodecError("frame", "header must be ENCODING or ENCODING TIME NONCE SIGNATURE")
    return encoding, headers, frame[2 + size :]
