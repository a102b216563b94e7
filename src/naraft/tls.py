"""TLS for naraft: the node's settings, its SSL contexts, and throwaway certificates.

One port serves clients and peers (node ids are addresses), so one listener speaks TLS to
both; docs/tls.md has the whole design. In short:

- The listener presents `--tls-cert-file` to clients. A member connecting to it names
  `PEER_SERVER_NAME` in TLS's server name indication, and the listener then presents
  `--peer-tls-cert-file` instead. With only one of the two pairs given, it presents that
  one to everyone.
- With peer TLS set, the listener asks every connection for a certificate without
  requiring one (`CERT_OPTIONAL`, verified against `--peer-trusted-ca-file` only), so that
  clients without certificates still connect. The API then refuses peer routes on a
  connection that did not present a certificate the peer CA signed (`has_peer_certificate`).
  A presented certificate the CA did not sign fails the handshake itself.
- A member's own requests (Raft messages, digest, beats, forwarded writes) use
  `PeerTls`: https, its peer certificate as the client certificate, the server verified
  against the peer CA. The CA is the cluster's: any certificate it signed is a member, and
  host names are not checked (the server name sent is `PEER_SERVER_NAME`).

Certificates (checking a configured pair, and the throwaway ones of `naraft cluster up
--tls` and the tests) are `naraft.certs`, apart because they need `cryptography`, which a
node without TLS files never loads (with PyJWT's use of it, about 9 MiB of a node's
memory). This module imports nothing of naraft but its errors (and `naraft.certs` when it
checks files), so that every layer (the server's, the launcher's, the client's) can use it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from naraft.errors import InvalidArgumentError

PEER_SERVER_NAME: Final = "naraft-peer"
"""The server name a member sends when it connects to another (TLS server name indication):
the listener then presents its peer certificate rather than its client-facing one."""
MINIMUM_VERSION: Final = ssl.TLSVersion.TLSv1_2
CERT_FLAG: Final = "--tls-cert-file"
KEY_FLAG: Final = "--tls-key-file"
PEER_CERT_FLAG: Final = "--peer-tls-cert-file"
PEER_KEY_FLAG: Final = "--peer-tls-key-file"
PEER_CA_FLAG: Final = "--peer-trusted-ca-file"
CA_FILE: Final = "ca.pem"  # the CA certificate beside the node files of `naraft.certs`


# ---------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """The node's certificate files; none given: plaintext HTTP, as before."""

    cert_file: Path | None = None  # presented to clients
    key_file: Path | None = None
    peer_cert_file: Path | None = None  # presented to members, and by this node to them
    peer_key_file: Path | None = None
    peer_trusted_ca_file: Path | None = None  # signs every member's peer certificate

    @property
    def client_tls(self) -> bool:
        return self.cert_file is not None

    @property
    def peer_tls(self) -> bool:
        return self.peer_cert_file is not None

    @property
    def enabled(self) -> bool:
        return self.client_tls or self.peer_tls

    def check(self, *, clustered: bool) -> None:
        """Raise InvalidArgumentError naming the flag when a setting is missing, a file
        cannot be read or parsed, or a key does not match its certificate."""
        _together(((CERT_FLAG, self.cert_file), (KEY_FLAG, self.key_file)))
        _together(
            (
                (PEER_CERT_FLAG, self.peer_cert_file),
                (PEER_KEY_FLAG, self.peer_key_file),
                (PEER_CA_FLAG, self.peer_trusted_ca_file),
            )
        )
        if clustered and self.client_tls and not self.peer_tls:
            raise InvalidArgumentError(
                PEER_CERT_FLAG,
                "is required",
                message=f"{CERT_FLAG} on a clustered node needs {PEER_CERT_FLAG}, "
                f"{PEER_KEY_FLAG} and {PEER_CA_FLAG} too: members reach each other on the "
                "same TLS port",
            )
        pairs = [
            (cert, key, cert_flag, key_flag)
            for cert, key, cert_flag, key_flag in (
                (self.cert_file, self.key_file, CERT_FLAG, KEY_FLAG),
                (self.peer_cert_file, self.peer_key_file, PEER_CERT_FLAG, PEER_KEY_FLAG),
            )
            if cert is not None and key is not None
        ]
        if pairs:
            # naraft.certs loads cryptography: only a node given files pays for it
            from naraft.certs import check_pair

            for cert, key, cert_flag, key_flag in pairs:
                check_pair(cert, key, cert_flag, key_flag)
        if self.peer_trusted_ca_file is not None:
            _load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), self.peer_trusted_ca_file)


def _together(group: Sequence[tuple[str, Path | None]]) -> None:
    given = [flag for flag, value in group if value is not None]
    if given and len(given) != len(group):
        missing = next(flag for flag, value in group if value is None)
        raise InvalidArgumentError(
            missing, "is required", message=f"{given[0]} needs {missing} too"
        )


def read_flag_file(path: Path, flag: str) -> bytes:
    """The bytes of the file `flag` names; InvalidArgumentError naming the flag if unreadable."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidArgumentError(flag, f"cannot read {path}: {error.strerror or error}") from None


def _load_ca(context: ssl.SSLContext, ca_file: Path) -> None:
    read_flag_file(ca_file, PEER_CA_FLAG)
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except ssl.SSLError:
        raise InvalidArgumentError(PEER_CA_FLAG, f"{ca_file} holds no PEM certificate") from None


# ---------------------------------------------------------------------- contexts


def _server_side(cert_file: Path, key_file: Path, ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.load_cert_chain(str(cert_file), str(key_file))
    if ca_file is not None:
        _load_ca(context, ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL  # ask, do not require: clients have none
    return context


def server_context(settings: TlsSettings) -> ssl.SSLContext | None:
    """The listener's context (None: plaintext). Call `settings.check` first."""
    ca = settings.peer_trusted_ca_file
    peer: ssl.SSLContext | None = None
    if settings.peer_cert_file is not None and settings.peer_key_file is not None:
        peer = _server_side(settings.peer_cert_file, settings.peer_key_file, ca)
    if settings.cert_file is None or settings.key_file is None:
        return peer
    main = _server_side(settings.cert_file, settings.key_file, ca)
    if peer is not None:
        members = peer

        def choose(
            connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext
        ) -> None:
            if name == PEER_SERVER_NAME:
                connection.context = members  # same verification, the peer certificate

        main.sni_callback = choose
    return main


def client_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A client's context: the server verified against `ca_file` (default: the system's
    trusted CAs), host names checked."""
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    context.minimum_version = MINIMUM_VERSION
    return context


@dataclass(frozen=True, slots=True)
class PeerTls:
    """How this node reaches the other members: plain HTTP, or https with its peer
    certificate. Every peer request passes `ssl` and `server_hostname` to aiohttp."""

    context: ssl.SSLContext | None = None

    @classmethod
    def of(cls, settings: TlsSettings) -> PeerTls:
        if (
            settings.peer_cert_file is None
            or settings.peer_key_file is None
            or settings.peer_trusted_ca_file is None
        ):
            return cls()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = MINIMUM_VERSION
        context.load_cert_chain(str(settings.peer_cert_file), str(settings.peer_key_file))
        _load_ca(context, settings.peer_trusted_ca_file)
        # A member is whoever holds a certificate the cluster's CA signed; its address is
        # not in question (the server name sent is PEER_SERVER_NAME, not the host).
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        return cls(context)

    @property
    def scheme(self) -> str:
        return "http" if self.context is None else "https"

    def url(self, address: str) -> str:
        """The base URL of the member at `address` (host:port)."""
        return f"{self.scheme}://{address}"

    @property
    def ssl(self) -> ssl.SSLContext | bool:
        """aiohttp's `ssl` argument: this context, or its default (unused over http)."""
        return True if self.context is None else self.context

    @property
    def server_hostname(self) -> str | None:
        return None if self.context is None else PEER_SERVER_NAME


PLAINTEXT: Final = PeerTls()
"""Members over plain HTTP: no peer TLS settings."""


def has_peer_certificate(transport: asyncio.BaseTransport | None) -> bool:
    """Whether a connection presented a certificate the listener verified: against the
    peer CA, the only CA it loads. (A plaintext transport has no `peercert`; a TLS one
    without a client certificate gives None.)"""
    return transport is not None and bool(transport.get_extra_info("peercert"))
