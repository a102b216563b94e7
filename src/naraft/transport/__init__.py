"""Peer RPC over HTTP: the wire codec, the cluster-secret check, the sender and the routes.

`PeerClient` sends (it satisfies the replica's `PeerSender` port); `peer_routes` receives and
hands each envelope to a `deliver` callback (`Replica.deliver` fits it). Neither ever lets a
transport error reach the core.
"""

from __future__ import annotations

from naraft.transport.auth import (
    SECRET_ENV_VAR,
    SIGNATURE_HEADER,
    SecretError,
    generate_secret,
    load_secret,
    sign,
    verify,
)
from naraft.transport.client import (
    DropReason,
    NoPeerMetrics,
    PeerClient,
    PeerMetrics,
    RpcOutcome,
    SessionFactory,
    default_session,
)
from naraft.transport.codec import (
    FORMAT_VERSION,
    GZIP_THRESHOLD_BYTES,
    MESSAGES_PATH,
    BodyTooLargeError,
    CodecError,
    compress_if_large,
    decode_batch,
    decompress,
    encode_batch,
)
from naraft.transport.server import InboundMetrics, NoInboundMetrics, Rejection, peer_routes

__all__ = [
    "FORMAT_VERSION",
    "GZIP_THRESHOLD_BYTES",
    "MESSAGES_PATH",
    "SECRET_ENV_VAR",
    "SIGNATURE_HEADER",
    "BodyTooLargeError",
    "CodecError",
    "DropReason",
    "InboundMetrics",
    "NoInboundMetrics",
    "NoPeerMetrics",
    "PeerClient",
    "PeerMetrics",
    "Rejection",
    "RpcOutcome",
    "SecretError",
    "SessionFactory",
    "compress_if_large",
    "decode_batch",
    "decompress",
    "default_session",
    "encode_batch",
    "generate_secret",
    "load_secret",
    "peer_routes",
    "sign",
    "verify",
]
