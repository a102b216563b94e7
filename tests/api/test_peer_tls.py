"""The shared port under TLS (docs/tls.md), in process: the Nacos app over `GuardedSite` with
the node's listener context, reached by clients, by a member, and by impostors.

The server's client-facing certificate and its peer certificate come from two different
CAs here, so that which one a connection is shown is visible. Each test runs on asyncio's
loop and on uvloop's (the server's)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import uvloop
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.api.conftest import Env, guarded_site

from naraft.api import make_app
from naraft.api.admin import RAFT_BASE
from naraft.api.edge import EdgeLimits
from naraft.api.forward import FORWARDED_HEADER
from naraft.api.v1.beats import BEATS_PATH
from naraft.certs import Issued, issue, new_ca, write_private
from naraft.tls import PEER_SERVER_NAME, PeerTls, TlsSettings, client_context, server_context
from naraft.transport.codec import MESSAGES_PATH
from naraft.transport.frames import STREAM_PATH

HOSTS = ("127.0.0.1", "localhost")
PEER_ROUTES = (
    ("POST", MESSAGES_PATH),
    ("GET", STREAM_PATH),
    ("POST", BEATS_PATH),
    ("POST", f"{RAFT_BASE}/digest"),
    ("GET", f"{RAFT_BASE}/digest/s1/0"),
    ("POST", f"{RAFT_BASE}/datums"),
    ("POST", f"{RAFT_BASE}/checksum"),
)
CLIENT_READ = "/nacos/v1/ns/service/list?pageNo=1&pageSize=10"


@dataclass
class Pki:
    client_ca: Issued
    peer_ca: Issued
    client_leaf: Issued  # the port's certificate for clients
    peer_leaf: Issued  # the members' certificate (one for all, as `cluster up` does per node)
    files: dict[str, Path]

    def write(self, root: Path) -> None:
        for name, issued in (("client", self.client_leaf), ("peer", self.peer_leaf)):
            write_private(root / f"{name}.pem", issued.cert_pem)
            write_private(root / f"{name}.key", issued.key_pem)
            self.files[name] = root / f"{name}.pem"
            self.files[f"{name}-key"] = root / f"{name}.key"
        for name, issued in (("client-ca", self.client_ca), ("peer-ca", self.peer_ca)):
            write_private(root / f"{name}.pem", issued.cert_pem)
            self.files[name] = root / f"{name}.pem"

    @property
    def member_settings(self) -> TlsSettings:
        return TlsSettings(
            peer_cert_file=self.files["peer"],
            peer_key_file=self.files["peer-key"],
            peer_trusted_ca_file=self.files["peer-ca"],
        )

    @property
    def node_settings(self) -> TlsSettings:
        return TlsSettings(
            cert_file=self.files["client"],
            key_file=self.files["client-key"],
            peer_cert_file=self.files["peer"],
            peer_key_file=self.files["peer-key"],
            peer_trusted_ca_file=self.files["peer-ca"],
        )


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every test on both loops: the node serves on uvloop, whose TLS is its own."""
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    client_ca, peer_ca = new_ca("clients' CA"), new_ca("peers' CA")
    made = Pki(client_ca, peer_ca, issue(client_ca, HOSTS), issue(peer_ca, HOSTS), {})
    made.write(tmp_path_factory.mktemp("pki"))
    return made


@dataclass
class Served:
    port: int
    reached: list[str]  # the peer routes whose handler ran

    def url(self, path: str, scheme: str = "https") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


async def _serve(settings: TlsSettings, required: bool) -> AsyncIterator[Served]:
    reached: list[str] = []

    async def peer_handler(request: web.Request) -> web.Response:
        reached.append(request.path)
        return web.Response(status=204)

    routes = [web.route(method, path, peer_handler) for method, path in PEER_ROUTES]
    app = make_app(Env().naming, peer_routes=routes, peer_certificate_required=required)
    limits = EdgeLimits(
        header_timeout_seconds=5, body_timeout_seconds=5, max_clients=16, max_peers=16
    )
    async with guarded_site(
        app, limits, idle_timeout_seconds=5, ssl_context=server_context(settings)
    ) as served:
        yield Served(served.port, reached)


@pytest.fixture
async def node(pki: Pki) -> AsyncIterator[Served]:
    async for served in _serve(pki.node_settings, required=True):
        yield served


def _session(context: ssl.SSLContext | bool) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, force_close=True))


async def _status(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    server_hostname: str | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    async with session.request(
        method, url, server_hostname=server_hostname, headers=headers
    ) as answer:
        await answer.read()
        return answer.status


async def test_a_client_without_a_certificate_reads_but_is_refused_every_peer_route(
    node: Served, pki: Pki
) -> None:
    async with _session(client_context(pki.files["client-ca"])) as session:
        assert await _status(session, "GET", node.url(CLIENT_READ)) == 200
        for method, path in PEER_ROUTES:
            assert await _status(session, method, node.url(path)) == 403, path
        # a write that claims to have been forwarded by a member is peer traffic too
        forwarded = {FORWARDED_HEADER: "127.0.0.1:1"}
        assert await _status(session, "GET", node.url(CLIENT_READ), headers=forwarded) == 403
    assert node.reached == []


async def test_a_member_with_its_peer_certificate_reaches_every_peer_route(
    node: Served, pki: Pki
) -> None:
    member = PeerTls.of(pki.member_settings)
    async with _session(member.ssl) as session:
        for method, path in PEER_ROUTES:
            status = await _status(
                session, method, node.url(path), server_hostname=member.server_hostname
            )
            assert status == 204, path
    assert node.reached == [path for _, path in PEER_ROUTES]


def _impostor(pki: Pki, leaf: Issued | None, root: Path) -> ssl.SSLContext:
    """A member's context (trusts the peer CA, sends the peer server name) presenting
    `leaf` (None: no certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(pki.files["peer-ca"]))
    context.check_hostname = False
    if leaf is not None:
        write_private(root / "impostor.pem", leaf.cert_pem)
        write_private(root / "impostor.key", leaf.key_pem)
        context.load_cert_chain(str(root / "impostor.pem"), str(root / "impostor.key"))
    return context


@pytest.mark.parametrize("kind", ["self-signed", "other CA", "the clients' CA"])
async def test_a_peer_certificate_the_peer_ca_did_not_sign_fails_the_handshake(
    node: Served, pki: Pki, tmp_path: Path, kind: str
) -> None:
    leaf = {
        "self-signed": issue(None, HOSTS),
        "other CA": issue(new_ca("someone else's CA"), HOSTS),
        "the clients' CA": pki.client_leaf,  # valid for clients, not a member's
    }[kind]
    async with _session(_impostor(pki, leaf, tmp_path)) as session:
        for method, path in PEER_ROUTES:
            with pytest.raises(aiohttp.ClientError):
                await _status(session, method, node.url(path), server_hostname=PEER_SERVER_NAME)
    assert node.reached == []


async def test_a_peer_without_a_certificate_is_refused_every_peer_route(
    node: Served, pki: Pki, tmp_path: Path
) -> None:
    async with _session(_impostor(pki, None, tmp_path)) as session:
        for method, path in PEER_ROUTES:
            status = await _status(
                session, method, node.url(path), server_hostname=PEER_SERVER_NAME
            )
            assert status == 403, path
    assert node.reached == []


async def test_plaintext_http_to_the_tls_port_gets_no_answer(node: Served) -> None:
    async with _session(False) as session:
        with pytest.raises(aiohttp.ClientError):
            await _status(session, "GET", node.url(CLIENT_READ, scheme="http"))
        with pytest.raises(aiohttp.ClientError):
            await _status(session, "POST", node.url(MESSAGES_PATH, scheme="http"))
    assert node.reached == []


async def _presented(port: int, context: ssl.SSLContext, server_name: str | None) -> bytes:
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_name
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True)
        assert isinstance(der, bytes)
        return der
    finally:
        writer.close()
        await writer.wait_closed()


def _der(issued: Issued) -> bytes:
    return issued.certificate.public_bytes(serialization.Encoding.DER)


async def test_clients_see_the_client_certificate_and_members_the_peer_one(
    node: Served, pki: Pki
) -> None:
    client = client_context(pki.files["client-ca"])
    assert await _presented(node.port, client, "127.0.0.1") == _der(pki.client_leaf)
    assert await _presented(node.port, client, "localhost") == _der(pki.client_leaf)
    member = PeerTls.of(pki.member_settings)
    assert member.context is not None
    assert await _presented(node.port, member.context, PEER_SERVER_NAME) == _der(pki.peer_leaf)
    # a member that does not send the peer name is shown the clients' certificate, which
    # its peer CA does not verify: it cannot be led to a client-facing impostor either
    with pytest.raises(ssl.SSLCertVerificationError):
        await _presented(node.port, member.context, None)


async def test_with_peer_tls_alone_everyone_is_shown_the_peer_certificate(pki: Pki) -> None:
    async for served in _serve(pki.member_settings, required=True):
        client = client_context(pki.files["peer-ca"])
        assert await _presented(served.port, client, "127.0.0.1") == _der(pki.peer_leaf)
        async with _session(client) as session:
            assert await _status(session, "GET", served.url(CLIENT_READ)) == 200
            assert await _status(session, "POST", served.url(MESSAGES_PATH)) == 403


async def test_client_tls_alone_leaves_peer_routes_to_their_signatures(pki: Pki) -> None:
    """A standalone node with client TLS only: no member certificates to ask for."""
    settings = TlsSettings(cert_file=pki.files["client"], key_file=pki.files["client-key"])
    async for served in _serve(settings, required=False):
        async with _session(client_context(pki.files["client-ca"])) as session:
            assert await _status(session, "POST", served.url(MESSAGES_PATH)) == 204
        leaf = x509.load_der_x509_certificate(
            await _presented(served.port, client_context(pki.files["client-ca"]), "localhost")
        )
        assert leaf == pki.client_leaf.certificate
