"""TLS settings and certificates: every bad file refused at start with the flag named, the
throwaway certificates fit for both ends of a connection, written owner-only."""

from __future__ import annotations

import datetime
import ssl
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from naraft.certs import issue, new_ca, write_cluster_certs, write_private
from naraft.cli import main
from naraft.config_sources import build_config
from naraft.errors import InvalidArgumentError
from naraft.tls import (
    CERT_FLAG,
    KEY_FLAG,
    PEER_CA_FLAG,
    PEER_CERT_FLAG,
    PEER_KEY_FLAG,
    PeerTls,
    TlsSettings,
    server_context,
)

HOSTS = ("127.0.0.1", "localhost")
PEERS = ("127.0.0.1:8848", "127.0.0.1:8849")
SECRET = {"NARAFT_CLUSTER_SECRET": "a-test-secret-of-enough-length-0123456789"}


@pytest.fixture(scope="module")
def ca_and_leaf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("certs")
    ca = new_ca()
    leaf, other = issue(ca, HOSTS), issue(ca, HOSTS)
    files = {
        "ca": root / "ca.pem",
        "cert": root / "node.pem",
        "key": root / "node.key",
        "other-key": root / "other.key",
    }
    write_private(files["ca"], ca.cert_pem)
    write_private(files["cert"], leaf.cert_pem)
    write_private(files["key"], leaf.key_pem)
    write_private(files["other-key"], other.key_pem)
    return files


def _values(tmp_path: Path, **tls: object) -> dict[str, object]:
    return {"id": PEERS[0], "data-dir": tmp_path, "peers": PEERS, **tls}


def _peer_values(files: dict[str, Path]) -> dict[str, object]:
    return {
        PEER_CERT_FLAG[2:]: files["cert"],
        PEER_KEY_FLAG[2:]: files["key"],
        PEER_CA_FLAG[2:]: files["ca"],
    }


def test_a_node_with_every_tls_file_builds_its_contexts(
    tmp_path: Path, ca_and_leaf: dict[str, Path]
) -> None:
    values = _values(
        tmp_path,
        **{CERT_FLAG[2:]: ca_and_leaf["cert"], KEY_FLAG[2:]: ca_and_leaf["key"]},
        **_peer_values(ca_and_leaf),
    )
    config = build_config(values, SECRET)
    assert config.tls.client_tls
    assert config.tls.peer_tls
    context = server_context(config.tls)
    assert context is not None
    assert context.verify_mode is ssl.CERT_OPTIONAL
    peer = PeerTls.of(config.tls)
    assert peer.url("h:1") == "https://h:1"
    assert peer.context is not None
    assert peer.context.verify_mode is ssl.CERT_REQUIRED


def test_without_tls_files_the_node_is_plaintext(tmp_path: Path) -> None:
    config = build_config(_values(tmp_path), SECRET)
    assert not config.tls.enabled
    assert server_context(config.tls) is None
    assert PeerTls.of(config.tls).url("h:1") == "http://h:1"


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({CERT_FLAG[2:]: "cert"}, KEY_FLAG),
        ({KEY_FLAG[2:]: "key"}, CERT_FLAG),
        ({PEER_CERT_FLAG[2:]: "cert", PEER_KEY_FLAG[2:]: "key"}, PEER_CA_FLAG),
        ({PEER_CA_FLAG[2:]: "ca"}, PEER_CERT_FLAG),
    ],
)
def test_a_half_given_pair_names_the_missing_flag(
    tmp_path: Path, ca_and_leaf: dict[str, Path], given: dict[str, str], named: str
) -> None:
    values = _values(tmp_path, **{name: ca_and_leaf[key] for name, key in given.items()})
    with pytest.raises(InvalidArgumentError) as raised:
        build_config(values, SECRET)
    assert raised.value.field == named


def test_client_tls_on_a_clustered_node_needs_peer_tls(
    tmp_path: Path, ca_and_leaf: dict[str, Path]
) -> None:
    tls = {CERT_FLAG[2:]: ca_and_leaf["cert"], KEY_FLAG[2:]: ca_and_leaf["key"]}
    with pytest.raises(InvalidArgumentError, match="members reach each other on the same"):
        build_config(_values(tmp_path, **tls), SECRET)
    standalone = {"id": PEERS[0], "data-dir": tmp_path, "standalone": True, **tls}
    assert build_config(standalone, {}).tls.client_tls  # one node: no peers to reach


def test_a_key_of_another_certificate_is_refused(
    tmp_path: Path, ca_and_leaf: dict[str, Path]
) -> None:
    values = _values(tmp_path, **_peer_values(ca_and_leaf))
    values[PEER_KEY_FLAG[2:]] = ca_and_leaf["other-key"]
    with pytest.raises(InvalidArgumentError, match="does not match the certificate") as raised:
        build_config(values, SECRET)
    assert raised.value.field == PEER_KEY_FLAG


@pytest.mark.parametrize(
    ("flag", "content", "says"),
    [
        (PEER_CERT_FLAG, None, "cannot read"),
        (PEER_CERT_FLAG, b"not a certificate", "holds no PEM certificate"),
        (PEER_KEY_FLAG, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
         "holds no unencrypted PEM private key"),
        (PEER_CA_FLAG, b"garbage", "holds no PEM certificate"),
        (PEER_CA_FLAG, None, "cannot read"),
    ],
)  # fmt: skip
def test_an_unusable_file_is_refused_naming_its_flag(
    tmp_path: Path,
    ca_and_leaf: dict[str, Path],
    flag: str,
    content: bytes | None,
    says: str,
) -> None:
    values = _values(tmp_path, **_peer_values(ca_and_leaf))
    bad = tmp_path / "bad.pem"
    if content is not None:
        bad.write_bytes(content)
    values[flag[2:]] = bad
    with pytest.raises(InvalidArgumentError, match=says) as raised:
        build_config(values, SECRET)
    assert raised.value.field == flag
    assert str(raised.value).startswith(flag)


def test_the_server_command_says_what_is_wrong_in_one_line(
    tmp_path: Path, ca_and_leaf: dict[str, Path]
) -> None:
    result = CliRunner().invoke(
        main,
        [
            "server", "--standalone", "--id", "127.0.0.1:8848", "--data-dir", str(tmp_path),
            CERT_FLAG, str(ca_and_leaf["cert"]), KEY_FLAG, str(ca_and_leaf["other-key"]),
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"naraft: {KEY_FLAG}: {ca_and_leaf['other-key']} does not match the certificate in"
        f" {CERT_FLAG} {ca_and_leaf['cert']}"
    ]


def test_issued_certificates_name_the_hosts_and_serve_both_ends() -> None:
    ca = new_ca()
    leaf = issue(ca, ["127.0.0.1", "localhost", "node-1.example"]).certificate
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "node-1.example"]
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u._name for u in usages} == {"serverAuth", "clientAuth"}
    assert leaf.issuer == ca.certificate.subject
    leaf.verify_directly_issued_by(ca.certificate)
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca
    assert constraints.value.path_length == 0


def test_self_signed_certificates_sign_themselves() -> None:
    alone = issue(None, HOSTS).certificate
    assert alone.issuer == alone.subject
    alone.verify_directly_issued_by(alone)


def test_cluster_certificates_are_owner_only_and_kept_for_a_restart(tmp_path: Path) -> None:
    nodes = ["127.0.0.1:9001", "127.0.0.1:9002"]
    files = write_cluster_certs(tmp_path / "tls", nodes)
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    paths = [files[nodes[0]].ca_file] + [
        p for f in files.values() for p in (f.cert_file, f.key_file)
    ]
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    first = {path: path.read_bytes() for path in paths}
    again = write_cluster_certs(tmp_path / "tls", nodes)
    assert again == files
    assert {path: path.read_bytes() for path in paths} == first
    for node in nodes:  # every one passes the start-up checks, as client and peer pair
        files[node].settings.check(clustered=True)
    files[nodes[0]].cert_file.unlink()  # one missing: a new CA and new certificates
    write_cluster_certs(tmp_path / "tls", nodes)
    assert files[nodes[0]].ca_file.read_bytes() != first[files[nodes[0]].ca_file]


def test_peer_settings_alone_are_a_complete_tls_setup(ca_and_leaf: dict[str, Path]) -> None:
    settings = TlsSettings(
        peer_cert_file=ca_and_leaf["cert"],
        peer_key_file=ca_and_leaf["key"],
        peer_trusted_ca_file=ca_and_leaf["ca"],
    )
    settings.check(clustered=True)
    assert server_context(settings) is not None  # everyone is served the peer certificate


def test_an_expired_certificate_is_refused_at_start(tmp_path: Path) -> None:
    ca = new_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    old = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=60))
        .not_valid_after(now - datetime.timedelta(days=30))
        .sign(ca.private_key, hashes.SHA256())
    )
    write_private(tmp_path / "old.pem", old.public_bytes(serialization.Encoding.PEM))
    write_private(
        tmp_path / "old.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    settings = TlsSettings(cert_file=tmp_path / "old.pem", key_file=tmp_path / "old.key")
    with pytest.raises(InvalidArgumentError, match="UTC, not now") as raised:
        settings.check(clustered=False)
    assert raised.value.field == CERT_FLAG
