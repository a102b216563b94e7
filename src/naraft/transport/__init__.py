"""Peer RPC over HTTP: the wire codec, the signatures, the streams, the sender and the routes.

`PeerClient` sends, on one stream per lane and peer (`frames`; it satisfies the replica's
`PeerSender` port); `peer_routes` receives and hands each envelope to a `deliver` callback
(`Replica.deliver` fits it). Neither ever lets a transport error reach the core. `signing`
binds every peer request's signature to its method, path, cluster id, sender, recipient,
time, nonce and body; `codec` is the batch format.
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
    DEFAULT_MAX_BATCH_BYTES,
    DropReason,
    Lane,
    NoPeerMetrics,
    PeerClient,
    PeerMetrics,
    RpcOutcome,
    SessionFactory,
    StreamEnd,
    default_session,
)
from naraft.transport.codec import (
    FORMAT_VERSION,
    GZIP_THRESHOLD_BYTES,
    MAX_BODY_BYTES,
    MESSAGES_PATH,
    BodyTooLargeError,
    CodecError,
    compress_if_large,
    decode_batch,
    decompress,
    encode_batch,
)
from naraft.transport.frames import STREAM_PATH
from naraft.transport.server import InboundMetrics, NoInboundMetrics, peer_routes, track_streams
from naraft.transport.signing import (
    Claim,
    PeerSigner,
    PeerVerifier,
    Rejection,
    SignatureError,
    default_cluster_id,
)

__all__ = [
    "DEFAULT_MAX_BATCH_BYTES",
    "FORMAT_VERSION",
    "GZIP_THRESHOLD_BYTES",
    "MAX_BODY_BYTES",
    "MESSAGES_PATH",
    "SECRET_ENV_VAR",
    "SIGNATURE_HEADER",
    "STREAM_PATH",
    "BodyTooLargeError",
    "Claim",
    "CodecError",
    "DropReason",
    "InboundMetrics",
    "Lane",
    "NoInboundMetrics",
    "NoPeerMetrics",
    "PeerClient",
    "PeerMetrics",
    "PeerSigner",
    "PeerVerifier",
    "Rejection",
    "RpcOutcome",
    "SecretError",
    "SessionFactory",
    "SignatureError",
    "StreamEnd",
    "compress_if_large",
    "decode_batch",
    "decompress",
    "default_cluster_id",
    "default_session",
    "encode_batch",
    "generate_secret",
    "load_secret",
    "peer_routes",
    "sign",
    "track_streams",
    "verify",
]
