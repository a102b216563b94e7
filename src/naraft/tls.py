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

Certificates for `naraft cluster up --tls` and the tests come from `new_ca` and `issue`
(`cryptography`), written 0600 by `write_private`. This module imports nothing of naraft
but its errors, so that every layer (the server's, the launcher's, the client's) can use it.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
_CERT_DAYS: Final = 30


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
        if self.cert_file is not None and self.key_file is not None:
            check_pair(self.cert_file, self.key_file, CERT_FLAG, KEY_FLAG)
        if self.peer_cert_file is not None and self.peer_key_file is not None:
            check_pair(self.peer_cert_file, self.peer_key_file, PEER_CERT_FLAG, PEER_KEY_FLAG)
        if self.peer_trusted_ca_file is not None:
            _load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), self.peer_trusted_ca_file)


def _together(group: Sequence[tuple[str, Path | None]]) -> None:
    given = [flag for flag, value in group if value is not None]
    if given and len(given) != len(group):
        missing = next(flag for flag, value in group if value is None)
        raise InvalidArgumentError(
            missing, "is required", message=f"{given[0]} needs {missing} too"
        )


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidArgumentError(flag, f"cannot read {path}: {error.strerror or error}") from None


def check_pair(cert_file: Path, key_file: Path, cert_flag: str, key_flag: str) -> None:
    """Both files readable PEM, the key unencrypted and matching the first certificate,
    which is valid now (an expired one would fail every handshake, far from its cause)."""
    cert_bytes, key_bytes = _read(cert_file, cert_flag), _read(key_file, key_flag)
    try:
        certificate = x509.load_pem_x509_certificates(cert_bytes)[0]
    except ValueError:
        raise InvalidArgumentError(cert_flag, f"{cert_file} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_bytes, password=None)
    except (ValueError, TypeError):
        raise InvalidArgumentError(
            key_flag, f"{key_file} holds no unencrypted PEM private key"
        ) from None
    if _spki(certificate.public_key()) != _spki(key.public_key()):
        raise InvalidArgumentError(
            key_flag, f"{key_file} does not match the certificate in {cert_flag} {cert_file}"
        )
    now = datetime.datetime.now(datetime.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise InvalidArgumentError(
            cert_flag,
            f"{cert_file} is valid from {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} to"
            f" {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now",
        )


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_ca(context: ssl.SSLContext, ca_file: Path) -> None:
    _read(ca_file, PEER_CA_FLAG)
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


# ---------------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "naraft"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def new_ca(common_name: str = "naraft throwaway CA", *, days: int = _CERT_DAYS) -> Issued:
    """A self-signed CA (P-256) that may sign leaf certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        _builder(common_name, _name(common_name), key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def issue(
    ca: Issued | None, hosts: Sequence[str], *, common_name: str = "naraft node",
    days: int = _CERT_DAYS,
) -> Issued:  # fmt: skip
    """A leaf certificate for `hosts` (IP addresses or DNS names), good for both ends of a
    connection (server and client authentication), signed by `ca` (None: self-signed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = _name(common_name) if ca is None else ca.certificate.subject
    signer = key if ca is None else ca.private_key
    builder = (
        _builder(common_name, issuer, key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(hosts), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    certificate = builder.sign(signer, hashes.SHA256())
    return Issued(certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path`, readable by its owner only (0600 from the first byte: written
    to a new file beside it, then renamed over)."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@dataclass(frozen=True, slots=True)
class NodeCertFiles:
    """One node's files from `write_cluster_certs`: its certificate and key (used for both
    client TLS and peer TLS) and the CA that signed every node's."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def settings(self) -> TlsSettings:
        return TlsSettings(
            cert_file=self.cert_file,
            key_file=self.key_file,
            peer_cert_file=self.cert_file,
            peer_key_file=self.key_file,
            peer_trusted_ca_file=self.ca_file,
        )


CA_FILE: Final = "ca.pem"


def write_cluster_certs(
    directory: Path,
    node_ids: Sequence[str],
    *,
    extra_hosts: Sequence[str] = ("localhost",),
    ca: Issued | None = None,
) -> dict[str, NodeCertFiles]:
    """A throwaway CA (or `ca`) and one certificate per node (its host and `extra_hosts` as
    names), written 0600 under `directory` (created 0700). Files there already are kept when
    all are present, so a restarted cluster keeps the CA its users trust. The CA's key is not
    written: only a caller that keeps `ca` can sign a certificate for a node that joins."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = {node: _node_files(directory, node) for node in node_ids}
    wanted = [directory / CA_FILE, *(p for f in files.values() for p in (f.cert_file, f.key_file))]
    if all(path.exists() for path in wanted):
        return files
    signer = ca if ca is not None else new_ca()
    for node in node_ids:
        write_node_cert(signer, directory, node, extra_hosts=extra_hosts)
    write_private(directory / CA_FILE, signer.cert_pem)
    return files


def write_node_cert(
    ca: Issued, directory: Path, node: str, *, extra_hosts: Sequence[str] = ("localhost",)
) -> NodeCertFiles:
    """`node`'s certificate and key signed by `ca`, written 0600 beside the cluster's."""
    paths = _node_files(directory, node)
    host = node.rpartition(":")[0].strip("[]")
    hosts = list(dict.fromkeys([host, "127.0.0.1", *extra_hosts]))
    leaf = issue(ca, hosts, common_name=node)
    write_private(paths.key_file, leaf.key_pem)
    write_private(paths.cert_file, leaf.cert_pem)
    return paths


def _node_files(directory: Path, node: str) -> NodeCertFiles:
    stem = node.replace(":", "_")
    return NodeCertFiles(directory / CA_FILE, directory / f"{stem}.pem", directory / f"{stem}.key")
