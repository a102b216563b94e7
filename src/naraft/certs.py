"""Certificates: checking the pair a node is configured with, and issuing throwaway ones.

Apart from `naraft.tls` because they need `cryptography`, which a node loads only when it
is given certificate files (`TlsSettings.check`) or asked to make them (`naraft cluster up
--tls`, the tests). `new_ca` makes a P-256 CA that may sign leaf certificates only; `issue`
signs a leaf good for both ends of a connection; `write_cluster_certs` writes a cluster's
set 0600 (docs/tls.md).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
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
from naraft.tls import CA_FILE, TlsSettings, read_flag_file

_CERT_DAYS: Final = 30


def check_pair(cert_file: Path, key_file: Path, cert_flag: str, key_flag: str) -> None:
    """Both files readable PEM, the key unencrypted and matching the first certificate,
    which is valid now (an expired one would fail every handshake, far from its cause)."""
    cert_bytes, key_bytes = read_flag_file(cert_file, cert_flag), read_flag_file(key_file, key_flag)
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
