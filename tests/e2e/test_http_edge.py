"""The HTTP server's own limits, tried with raw sockets against a real `naraft server`.

Half-open requests are closed within the header and body deadlines, connections beyond
the cap are refused while peer traffic still gets through, a request with too many
parameters is refused naming the limit, and every kind of malformed request is answered
400 with one log line and no traceback.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.e2e.harness import FAST_TIMERS, LocalCluster, NodeProcess, local_cluster, wait_for

from naraft.api.edge import MAX_HEADER_COUNT

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_CONNECTIONS = 4
MAX_PARAMS = 20
UNCLASSIFIED_RESERVE = 32  # naraft.api.edge.UNCLASSIFIED_RESERVE
EDGE_ARGS = (
    *FAST_TIMERS,
    "--header-timeout-ms", str(int(HEADER_TIMEOUT * 1000)),
    "--body-timeout-ms", str(int(BODY_TIMEOUT * 1000)),
    "--max-connections", str(MAX_CONNECTIONS),
    "--max-params", str(MAX_PARAMS),
)  # fmt: skip
LEADER = b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\nHost: n\r\n\r\n"
LEADER_ONCE = b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n"
PEER_MESSAGES = (
    b"POST /nacos/v1/ns/raft/messages HTTP/1.1\r\nHost: n\r\nConnection: close\r\n"
    b"X-Naraft-Sender: 127.0.0.1:1\r\nContent-Length: 2\r\n\r\nxx"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("edge")
    with local_cluster(root, size=1, extra_args=EDGE_ARGS) as one:
        one.wait_ready()
        one.client.close()  # its keep-alive connection would hold one of the few slots
        yield one
        assert not one.nodes[0].tracebacks()
        assert " ERROR " not in one.nodes[0].log_text()


@pytest.fixture
def node(cluster: LocalCluster) -> NodeProcess:
    return cluster.nodes[0]


def connect(node: NodeProcess) -> socket.socket:
    host, port = node.address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.settimeout(10)
    return sock


@dataclass
class Outcome:
    data: bytes
    seconds: float  # until the server closed the connection

    @property
    def status(self) -> int | None:
        head = self.data.split(b"\r\n", 1)[0].split()
        return int(head[1]) if len(head) >= 2 and head[1].isdigit() else None

    @property
    def body(self) -> str:
        return self.data.partition(b"\r\n\r\n")[2].decode(errors="replace")


def read_until_closed(sock: socket.socket, limit_seconds: float = 10.0) -> Outcome:
    """Everything the server sends until it closes the connection (or the limit passes)."""
    start = time.monotonic()
    sock.settimeout(limit_seconds)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        sock.close()
    return Outcome(data, time.monotonic() - start)


def exchange(node: NodeProcess, *parts: bytes, pause: float = 0.0) -> Outcome:
    sock = connect(node)
    for number, part in enumerate(parts):
        if number and pause:
            time.sleep(pause)
        sock.sendall(part)
    return read_until_closed(sock)


def one_response(sock: socket.socket) -> bytes:
    """One answer on a keep-alive connection (its Content-Length tells where it ends)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


ACCESS_LINE = " INFO naraft.access: "


class LogWatch:
    """The lines a node's log gains from now on, but for the access log's (one per request
    by design: docs/deploy.md#logs)."""

    def __init__(self, node: NodeProcess) -> None:
        self._path = node.log_path
        self._offset = self._path.stat().st_size

    def lines(self) -> list[str]:
        with self._path.open("rb") as log:
            log.seek(self._offset)
            text = log.read().decode(errors="replace")
        return [line for line in text.splitlines() if ACCESS_LINE not in line]

    def wait_lines(self, count: int) -> list[str]:
        wait_for(lambda: len(self.lines()) >= count, timeout_seconds=5, what=f"{count} log lines")
        return self.lines()


# ---------------------------------------------------------------------- malformed HTTP

FORM = b"Content-Type: application/x-www-form-urlencoded\r\n"
PARSED_OK_BUT_INVALID = {"invalid percent-encoding"}
"""Well-formed HTTP whose parameters fail validation: a plain 400 like any bad value,
which the node does not log. Every other case is logged in exactly one line."""
MALFORMED: dict[str, tuple[bytes, ...]] = {
    "garbage request line": (b"GARBAGE\r\n\r\n",),
    "bad method": (b"G@T / HTTP/1.1\r\nHost: n\r\n\r\n",),
    "bad HTTP version": (b"GET / HTTP/9.9\r\nHost: n\r\n\r\n",),
    "header without a colon": (b"GET / HTTP/1.1\r\nHost: n\r\nBad Header\r\n\r\n",),
    "control character in the path": (b"GET /\x01 HTTP/1.1\r\nHost: n\r\n\r\n",),
    "non-UTF-8 path": (b"GET /nacos/v1/ns/\xff HTTP/1.1\r\nHost: n\r\n\r\n",),
    "HTTP/1.1 without Host": (b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\n\r\n",),  # RFC 9112 3.2
    "non-UTF-8 query": (
        b"GET /nacos/v1/ns/instance/list?serviceName=\xff\xfe HTTP/1.1\r\nHost: n\r\n\r\n",
    ),
    "request line too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: n\r\n\r\n",),
    "one header line too many": (
        b"GET / HTTP/1.1\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADER_COUNT))
        + b"Host: n\r\n\r\n",
    ),  # fmt: skip
    "header too long": (b"GET / HTTP/1.1\r\nHost: n\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",),
    "bad Content-Length": (
        b"POST /nacos/v1/ns/instance HTTP/1.1\r\nHost: n\r\nContent-Length: abc\r\n\r\n",
    ),
    "two Content-Lengths": (
        b"POST /nacos/v1/ns/instance HTTP/1.1\r\nHost: n\r\n"
        b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ),
    "bad chunk size with the headers": (
        b"POST /nacos/v1/ns/instance HTTP/1.1\r\nHost: n\r\n"
        + FORM
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    ),  # fmt: skip
    "bad chunk size after the headers": (
        b"POST /nacos/v1/ns/instance HTTP/1.1\r\nHost: n\r\n"
        + FORM
        + b"Transfer-Encoding: chunked\r\n\r\n",
        b"zz\r\nabc\r\n0\r\n\r\n",
    ),
    "chunk longer than its size (kv)": (
        b"PUT /naraft/v1/kv/edge-chunk HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\n",
        b'3\r\n{"value": 1}\r\n0\r\n\r\n',
    ),
    "non-UTF-8 form body": (
        b"POST /nacos/v1/ns/instance HTTP/1.1\r\nHost: n\r\n"
        + FORM
        + b"Content-Length: 8\r\nConnection: close\r\n\r\nip=\xff\xfe\xfd&a",
    ),  # fmt: skip
    "invalid percent-encoding": (
        b"GET /nacos/v1/ns/instance/list?serviceName=%zz%4 HTTP/1.1\r\n"
        b"Host: n\r\nConnection: close\r\n\r\n",
    ),
}


@pytest.mark.parametrize("case", MALFORMED.keys())
def test_a_malformed_request_is_answered_400_with_one_log_line(
    node: NodeProcess, case: str
) -> None:
    watch = LogWatch(node)
    outcome = exchange(node, *MALFORMED[case], pause=0.2)
    assert outcome.status == 400, outcome.data
    assert "Traceback" not in outcome.body
    assert outcome.seconds < 3  # answered, not left to a deadline
    expected = 0 if case in PARSED_OK_BUT_INVALID else 1
    if expected:
        watch.wait_lines(expected)
    time.sleep(0.2)  # a second line, if any, is written before the answer is sent
    lines = watch.lines()
    assert len(lines) == expected, lines
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line]


def test_malformed_http_from_the_parser_is_logged_once_naming_the_client(
    node: NodeProcess,
) -> None:
    watch = LogWatch(node)
    assert exchange(node, b"GARBAGE\r\n\r\n").status == 400
    (line,) = watch.wait_lines(1)
    assert "bad request from 127.0.0.1 answered 400: Invalid method" in line
    time.sleep(0.2)
    assert len(watch.lines()) == 1


def test_a_body_broken_after_the_headers_is_logged_once(node: NodeProcess) -> None:
    watch = LogWatch(node)
    head = (
        b"POST /nacos/v1/ns/instance HTTP/1.1\r\nHost: n\r\n"
        + FORM
        + b"Transfer-Encoding: chunked\r\n\r\n"
    )
    outcome = exchange(node, head, b"zz\r\nabc\r\n0\r\n\r\n", pause=0.3)
    assert outcome.status == 400
    (line,) = watch.wait_lines(1)
    assert "answered 400: malformed body framing" in line
    time.sleep(0.2)
    assert len(watch.lines()) == 1


def test_an_unknown_path_still_answers_404(node: NodeProcess) -> None:
    outcome = exchange(node, b"GET /nope HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n")
    assert outcome.status == 404
    answer = json.loads(outcome.body)  # Nacos's (Spring's) error JSON, not bare text
    assert (answer["status"], answer["error"], answer["path"]) == (404, "Not Found", "/nope")


def test_an_http_1_0_request_needs_no_host(node: NodeProcess) -> None:
    """HTTP/1.1 without Host is a 400 (a case above); HTTP/1.0, which some old health
    checkers still speak, has no Host to require."""
    outcome = exchange(node, b"GET /nacos/v1/ns/raft/leader HTTP/1.0\r\n\r\n")
    assert outcome.status == 200, outcome.data


def send_until_closed(node: NodeProcess, request: bytes) -> Outcome:
    """Send `request` and read the answer; a server that closes while the request is still
    arriving resets the connection, which counts as closed."""
    sock = connect(node)
    start = time.monotonic()
    try:
        sock.sendall(request)
    except OSError:
        sock.close()
        return Outcome(b"", time.monotonic() - start)
    return read_until_closed(sock)


def test_headers_beyond_64_kib_close_the_connection_with_one_log_line(node: NodeProcess) -> None:
    watch = LogWatch(node)
    # 100 lines of 1 KB: under the count and line bounds, over the sum
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(100))
    outcome = send_until_closed(
        node, b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\nHost: n\r\n" + headers
    )
    assert outcome.status in (None, 431), outcome.data
    assert outcome.seconds < 3
    (line,) = watch.wait_lines(1)
    assert "request headers larger than 65536 bytes" in line
    time.sleep(0.2)
    assert len(watch.lines()) == 1


def test_many_headers_under_the_bound_and_a_large_body_in_one_packet_are_served(
    node: NodeProcess,
) -> None:
    # MAX_HEADER_COUNT lines in all (with Host and Connection), about 60 KB
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 450) for i in range(MAX_HEADER_COUNT - 2))
    outcome = exchange(
        node,
        b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\nHost: n\r\n"
        + headers
        + b"Connection: close\r\n\r\n",
    )
    assert outcome.status == 200
    body = json.dumps({"value": "v" * 900_000}).encode()  # under the 1 MiB value limit
    head = b"PUT /naraft/v1/kv/edge-large HTTP/1.1\r\nHost: n\r\nConnection: close\r\n"
    outcome = exchange(node, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert outcome.status == 200, outcome.data


def test_an_unread_body_after_a_413_is_not_taken_for_headers(node: NodeProcess) -> None:
    """The node answers 413 from the declared length and drains the body: those bytes are
    not the next request's headers, and the connection serves the next request."""
    body = b"v" * (3 << 20)  # past the largest kv write's body
    sock = connect(node)
    try:
        sock.sendall(
            b"PUT /naraft/v1/kv/edge-huge HTTP/1.1\r\nHost: n\r\nContent-Length: %d\r\n\r\n"
            % len(body)
        )
        sock.sendall(body)
        assert one_response(sock).startswith(b"HTTP/1.1 413")
        sock.sendall(LEADER)
        assert one_response(sock).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


# ---------------------------------------------------------------------- deadlines


def test_stalled_headers_are_closed_within_the_header_timeout(node: NodeProcess) -> None:
    sock = connect(node)
    sock.sendall(b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\nHost: n\r\n")  # no blank line
    outcome = read_until_closed(sock)
    assert outcome.data == b""
    assert HEADER_TIMEOUT * 0.8 <= outcome.seconds < HEADER_TIMEOUT + 2


def test_a_later_requests_header_deadline_counts_from_its_own_first_byte(
    node: NodeProcess,
) -> None:
    # one header timer serves every request of a connection: armed for the first, it must
    # not close the connection on the first request's schedule
    sock = connect(node)
    sock.sendall(LEADER)
    assert one_response(sock).startswith(b"HTTP/1.1 200")
    time.sleep(HEADER_TIMEOUT * 0.6)
    sock.sendall(b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\nHost: n\r\n")  # no blank line
    outcome = read_until_closed(sock)
    assert outcome.data == b""
    assert HEADER_TIMEOUT * 0.8 <= outcome.seconds < HEADER_TIMEOUT + 2


def test_a_connection_that_sends_nothing_is_closed_within_the_header_timeout(
    node: NodeProcess,
) -> None:
    outcome = read_until_closed(connect(node))
    assert outcome.data == b""
    assert outcome.seconds < HEADER_TIMEOUT + 2


def drip(sock: socket.socket, data: bytes, pause: float) -> float | None:
    """Send `data` a byte at a time; the seconds until the server closed, None if it never."""
    start = time.monotonic()
    try:
        for byte in data:
            sock.sendall(bytes([byte]))
            time.sleep(pause)
    except OSError:
        return time.monotonic() - start
    finally:
        sock.close()
    return None


def test_headers_sent_a_byte_at_a_time_do_not_extend_the_deadline(node: NodeProcess) -> None:
    closed_after = drip(connect(node), LEADER, 0.1)  # 47 bytes would take 4.7 s
    assert closed_after is not None
    assert closed_after < HEADER_TIMEOUT + 2


def test_a_stalled_body_is_answered_408_within_the_body_timeout(node: NodeProcess) -> None:
    outcome = exchange(
        node,
        b"PUT /naraft/v1/kv/edge-stalled HTTP/1.1\r\nHost: n\r\nContent-Length: 100\r\n\r\n"
        + b'{"va',
    )
    assert outcome.status == 408, outcome.data
    assert "did not arrive within 1.0 s" in outcome.body
    assert BODY_TIMEOUT * 0.8 <= outcome.seconds < BODY_TIMEOUT + 2
    answer = exchange(
        node, b"GET /naraft/v1/kv/edge-stalled HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n"
    )
    assert answer.status == 404  # nothing was written


def test_a_stalled_body_the_handler_never_reads_is_closed_in_bounded_time(
    node: NodeProcess,
) -> None:
    sock = connect(node)
    sock.sendall(
        b"GET /nacos/v1/ns/raft/leader HTTP/1.1\r\nHost: n\r\nContent-Length: 100\r\n\r\n"
        + b"partial"
    )
    outcome = read_until_closed(sock)
    assert outcome.status == 200  # answered at once, then the unread body is given up on
    assert outcome.seconds < BODY_TIMEOUT + 2


def test_an_idle_keep_alive_connection_outlives_the_header_timeout(node: NodeProcess) -> None:
    sock = connect(node)
    try:
        sock.sendall(LEADER)
        assert one_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(HEADER_TIMEOUT * 1.5)  # idle between requests: the idle timeout's business
        sock.sendall(LEADER)
        assert one_response(sock).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


@pytest.mark.parametrize("split_in", ["headers", "body"])
def test_a_request_that_arrived_while_the_node_was_stopped_is_served(
    node: NodeProcess, split_in: str
) -> None:
    """The deadline passes while the process is stopped (SIGSTOP), but the rest of the
    request is already in its socket buffer when it resumes: it must be served, not cut."""
    body = json.dumps({"value": "resumed"}).encode()
    request = (
        b"PUT /naraft/v1/kv/edge-resumed HTTP/1.1\r\nHost: n\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    cut = request.index(b"\r\n") + 2 if split_in == "headers" else len(request) - 5
    sock = connect(node)
    sock.sendall(request[:cut])
    time.sleep(0.2)  # the node has read the first part and armed its deadline
    node.pause()
    try:
        sock.sendall(request[cut:])
        time.sleep(max(HEADER_TIMEOUT, BODY_TIMEOUT) + 1)
    finally:
        node.resume()
    outcome = read_until_closed(sock)
    assert outcome.status == 200, outcome.data


# ---------------------------------------------------------------------- connection cap


def test_connections_beyond_the_cap_get_503_while_peers_still_get_through(
    node: NodeProcess,
) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = connect(node)
            sock.sendall(LEADER)
            assert one_response(sock).startswith(b"HTTP/1.1 200")
            held.append(sock)
        refused = exchange(node, LEADER_ONCE)
        assert refused.status == 503, refused.data
        assert "too many connections" in refused.body
        # a peer route on a new connection reaches its handler (which judges the body)
        peer = exchange(node, PEER_MESSAGES)
        assert peer.status not in (None, 503), peer.data
        # the held clients keep being served
        held[0].sendall(LEADER)
        assert one_response(held[0]).startswith(b"HTTP/1.1 200")
        # and a freed slot is taken again
        held.pop().close()

        def served() -> bool:
            return exchange(node, LEADER_ONCE).status == 200

        wait_for(served, timeout_seconds=5, what="a client served once a slot is free")
    finally:
        for sock in held:
            sock.close()


def test_sockets_that_send_nothing_cannot_lock_a_peer_out(node: NodeProcess) -> None:
    silent = [connect(node) for _ in range(MAX_CONNECTIONS + UNCLASSIFIED_RESERVE + 8)]
    try:
        time.sleep(0.2)
        peer = exchange(node, PEER_MESSAGES)
        assert peer.status not in (None, 503), peer.data
    finally:
        for sock in silent:
            sock.close()


# ---------------------------------------------------------------------- parameters


def params(count: int) -> bytes:
    return b"&".join(b"p%d=v" % i for i in range(count))


def test_too_many_query_parameters_are_refused_naming_the_limit(node: NodeProcess) -> None:
    path = b"/nacos/v1/ns/instance/list?" + params(MAX_PARAMS + 1)
    outcome = exchange(node, b"GET " + path + b" HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n")
    assert outcome.status == 400
    assert outcome.body == f"too many parameters: 21; at most {MAX_PARAMS} (--max-params)"


def test_query_and_form_parameters_count_together(node: NodeProcess) -> None:
    body = params(MAX_PARAMS // 2 + 1)
    head = b"POST /nacos/v1/ns/instance?" + params(MAX_PARAMS // 2) + b" HTTP/1.1\r\nHost: n\r\n"
    outcome = exchange(
        node,
        head + FORM + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body,
    )
    assert outcome.status == 400
    assert outcome.body.startswith("too many parameters: 21;")


def test_parameters_at_the_limit_reach_the_handler(node: NodeProcess) -> None:
    path = b"/nacos/v1/ns/instance/list?serviceName=absent&" + params(MAX_PARAMS - 1)
    outcome = exchange(node, b"GET " + path + b" HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n")
    assert "too many parameters" not in outcome.body
    assert outcome.status in (200, 404), outcome.data  # the handler's own answer


# ---------------------------------------------------------------------- a saturated member


def request_on(sock: socket.socket, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request on a held keep-alive connection: (status, body)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: n\r\nContent-Length: {len(body)}\r\n"
    sock.sendall(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
    answer = one_response(sock)
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


def test_a_member_whose_client_slots_are_full_still_takes_part_in_elections(
    tmp_path: Path,
) -> None:
    """Peers reach a member over connections they open when they need them: a follower
    only ever sent to the old leader, so electing a new one needs new peer connections to
    the saturated member. They must get in while clients hold every slot."""
    args = (*FAST_TIMERS, "--max-connections", "2", "--header-timeout-ms", "30000")
    with local_cluster(tmp_path / "cluster", size=3, extra_args=args) as cluster:
        leader = cluster.wait_ready()
        full, other = (n for n in cluster.nodes if n is not leader)
        cluster.client.close()  # its keep-alive connection to `full` would take a slot
        cluster.client = httpx.Client(timeout=5.0)
        held = [connect(full) for _ in range(2)]
        silent: list[socket.socket] = []
        try:
            for sock in held:
                assert request_on(sock, "GET", "/nacos/v1/ns/raft/leader")[0] == 200
            silent = [connect(full) for _ in range(UNCLASSIFIED_RESERVE + 8)]
            assert exchange(full, LEADER_ONCE).status == 503
            leader.kill()

            def new_leader() -> str | None:
                status, body = request_on(held[0], "GET", "/nacos/v1/ns/raft/leader")
                found = json.loads(body).get("leader") if status == 200 else None
                return found if found in (full.address, other.address) else None

            elected = wait_for(new_leader, timeout_seconds=20, what="a leader without the old")
            value = json.dumps({"value": "after-the-election"}).encode()
            if elected == full.address:
                assert request_on(held[1], "PUT", "/naraft/v1/kv/saturated", value)[0] == 200
            else:
                assert cluster.put(other, "saturated", "after-the-election").status_code == 200

            def applied_on_full() -> bool:
                status, body = request_on(held[0], "GET", "/naraft/v1/kv/saturated")
                return status == 200 and b"after-the-election" in body

            wait_for(applied_on_full, timeout_seconds=10, what="the saturated member to apply")
            assert exchange(full, LEADER_ONCE).status == 503  # still full for clients
        finally:
            for sock in held + silent:
                sock.close()
