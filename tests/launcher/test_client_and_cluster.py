"""The launcher's and the client's rules, without starting a process: the write-outcome
classifier, status parsing, the leader rule, the command lines and the secret file."""

from __future__ import annotations

import io
import itertools
import logging
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from naraft.client import (
    NodeStatus,
    WriteOutcome,
    body_of,
    classify_failure,
    classify_write,
    parse_status,
)
from naraft.cluster import (
    EPHEMERAL_RANGE_FILE,
    GRPC_PORT_OFFSET,
    NodeProcess,
    NodeSpec,
    ProcessCluster,
    agreed_leader,
    free_ports,
    server_command,
    server_env,
    tracebacks_in,
    write_secret_file,
)
from naraft.config import LogFormat
from naraft.logs import TEXT_FORMAT, JsonFormatter

APPLIED, NOT_APPLIED, UNKNOWN = WriteOutcome.APPLIED, WriteOutcome.NOT_APPLIED, WriteOutcome.UNKNOWN


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"index": 7}, APPLIED),
        (204, None, APPLIED),
        (409, {"error": "prev: compare failed", "current": "x"}, NOT_APPLIED),
        (400, {"error": "value: required", "field": "value"}, NOT_APPLIED),
        (413, "value too large", NOT_APPLIED),
        (429, None, NOT_APPLIED),
        (503, {"outcome": "not-applied", "leader": None}, NOT_APPLIED),
        (503, {"outcome": "unknown"}, UNKNOWN),
        (503, "no leader", UNKNOWN),  # the Nacos API's plain text: the server did not say
        (507, {"outcome": "not-applied", "reason": "disk-full"}, NOT_APPLIED),
        (500, {"outcome": "not-applied", "reason": "rejected-on-apply"}, NOT_APPLIED),
        (500, {"error": "boom"}, UNKNOWN),
        (502, None, UNKNOWN),
        (400, {"outcome": "unknown"}, UNKNOWN),  # the server's own word wins
    ],
)
def test_a_write_answer_is_classified_by_the_one_rule(
    status: int, body: object, expected: WriteOutcome
) -> None:
    assert classify_write(status, body) is expected


def test_a_write_without_an_answer_is_not_applied_only_if_it_was_never_sent() -> None:
    assert classify_failure(sent=False) is NOT_APPLIED
    assert classify_failure(sent=True) is UNKNOWN


def test_only_a_json_object_counts_as_a_body() -> None:
    assert body_of(b'{"outcome": "unknown"}') == {"outcome": "unknown"}
    assert body_of(b"[1, 2]") == {}
    assert body_of(b"caused: no leader") == {}


STATE: dict[str, Any] = {
    "id": "127.0.0.1:1",
    "role": "leader",
    "term": 3,
    "leader": "127.0.0.1:1",
    "commitIndex": 9,
    "appliedIndex": 8,
    "members": ["127.0.0.1:1"],
}


def test_a_status_is_parsed_and_keeps_the_rest() -> None:
    status = parse_status(STATE)
    assert (status.role, status.term, status.leader, status.commit_index) == (
        "leader",
        3,
        STATE["leader"],
        9,
    )
    assert status.leads
    assert status.raw["members"] == ["127.0.0.1:1"]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ([], "expected a JSON object"),
        ({k: v for k, v in STATE.items() if k != "term"}, "missing field term"),
        ({**STATE, "leader": 5}, "leader must be a string or null"),
        ({**STATE, "term": "three"}, "invalid literal"),
    ],
)
def test_a_bad_status_is_a_value_error_naming_the_field(data: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_status(data)


MEMBERS = ["a", "b", "c"]


def view(role: str, term: int, leader: str | None) -> NodeStatus:
    return NodeStatus(
        id="?", role=role, term=term, leader=leader, commit_index=0, applied_index=0, raw={}
    )


def test_the_leader_needs_its_own_claim_and_a_majority_at_its_term() -> None:
    assert (
        agreed_leader(
            {"a": view("leader", 2, "a"), "b": view("follower", 2, "a"), "c": None}, MEMBERS
        )
        == "a"
    )
    # the claim alone is not enough
    assert agreed_leader({"a": view("leader", 2, "a"), "b": None, "c": None}, MEMBERS) is None
    # followers backing a node that does not claim it (yet, or any more)
    assert (
        agreed_leader(
            {"a": view("follower", 2, "a"), "b": view("follower", 2, "a"), "c": None}, MEMBERS
        )
        is None
    )


def test_a_deposed_leader_in_a_minority_does_not_pass_and_does_not_block() -> None:
    statuses = {
        "a": view("leader", 2, "a"),  # partitioned away, still believes it leads
        "b": view("leader", 3, "b"),
        "c": view("follower", 3, "b"),
    }
    assert agreed_leader(statuses, MEMBERS) == "b"


def test_backers_at_another_term_do_not_count() -> None:
    statuses = {
        "a": view("leader", 4, "a"),
        "b": view("follower", 3, "a"),  # backed a at an older term: not this leadership
        "c": view("candidate", 4, None),
    }
    assert agreed_leader(statuses, MEMBERS) is None


def test_a_node_outside_the_members_is_never_the_leader_nor_a_backer() -> None:
    statuses = {"x": view("leader", 2, "x"), "a": view("follower", 2, "x")}
    assert agreed_leader(statuses, MEMBERS) is None
    assert agreed_leader({"a": view("leader", 1, "a")}, ["a"]) == "a"  # one member


def test_the_command_line_holds_what_the_spec_says_with_extra_args_last(tmp_path: Path) -> None:
    spec = NodeSpec(
        node_id="127.0.0.1:1",
        data_dir=tmp_path,
        peers=("127.0.0.1:1", "127.0.0.1:2"),
        listen="127.0.0.1:9",
        secret_file=tmp_path / "s",
        cluster_token="t-1",
        extra_args=("--tick-ms", "50"),
        wrap=("ip", "netns", "exec", "ns1"),
        python="py",
    )
    assert server_command(spec) == [
        "ip", "netns", "exec", "ns1", "py", "-m", "naraft", "server",
        "--id", "127.0.0.1:1", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:9",
        "--peers", "127.0.0.1:1,127.0.0.1:2", "--cluster-secret-file", str(tmp_path / "s"),
        "--cluster-token", "t-1", "--tick-ms", "50",
    ]  # fmt: skip
    assert spec.url == "http://127.0.0.1:9"
    alone = NodeSpec(node_id="h:1", data_dir=tmp_path, standalone=True, python="py")
    assert server_command(alone)[4:] == ["--id", "h:1", "--data-dir", str(tmp_path), "--standalone"]


def test_a_tls_cluster_runs_every_node_with_its_certificates_through_the_command_line(
    tmp_path: Path,
) -> None:
    cluster = ProcessCluster(tmp_path / "c", 3, tls=True)
    assert cluster.ca_file == tmp_path / "c" / "tls" / "ca.pem"
    assert cluster.ssl_context is not None
    for node in cluster.nodes:
        spec = node.spec
        assert spec.url == f"https://{spec.node_id}"
        args = server_command(spec)
        given = dict(itertools.pairwise(args))
        cert = given["--tls-cert-file"]
        assert given["--tls-key-file"] == cert.removesuffix(".pem") + ".key"
        assert given["--peer-tls-cert-file"] == cert
        assert given["--peer-tls-key-file"] == given["--tls-key-file"]
        assert given["--peer-trusted-ca-file"] == str(cluster.ca_file)
        spec.tls.check(clustered=True)  # what the node checks at start passes
    plain = ProcessCluster(tmp_path / "p", 1)
    assert plain.ssl_context is None
    assert plain.nodes[0].url.startswith("http://")
    assert "--tls-cert-file" not in server_command(plain.nodes[0].spec)


def test_failpoints_and_env_reach_the_process_environment(tmp_path: Path) -> None:
    spec = NodeSpec(node_id="h:1", data_dir=tmp_path, env={"X": "1"}, failpoints="a=1")
    env = server_env(spec)
    assert (env["X"], env["NARAFT_FAILPOINTS"]) == ("1", "a=1")


def test_the_secret_file_is_born_private_and_an_existing_one_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "cluster.secret"
    write_secret_file(path, "first-secret-of-the-cluster")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_secret_file(path, "another")
    assert path.read_text() == "first-secret-of-the-cluster\n"


def test_a_cluster_lays_out_its_nodes_without_starting_them(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path / "c", 3, separate_listen=True, extra_args=("--x",))
    assert len(set(cluster.ports)) == 3
    specs = [node.spec for node in cluster.nodes]
    assert [s.node_id for s in specs] == cluster.members
    assert all(s.listen is not None and s.listen != s.node_id for s in specs)
    assert all(s.peers == tuple(cluster.members) and not s.standalone for s in specs)
    assert all(s.secret_file == cluster.secret_file for s in specs)
    assert cluster.secret_file.read_text().strip() == cluster.secret
    assert stat.S_IMODE(specs[0].data_dir.stat().st_mode) == 0o700
    assert not any(node.running for node in cluster.nodes)
    one = ProcessCluster(tmp_path / "one", 1)
    assert one.nodes[0].spec.standalone
    assert one.nodes[0].spec.peers == ()


def test_a_settled_leader_waits_for_every_serving_node_to_report_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = ProcessCluster(tmp_path / "c", 3)
    a, b, c = cluster.members
    views: dict[str, NodeStatus | None] = {
        a: view("leader", 2, a),
        b: view("follower", 2, a),
        c: None,  # just restarted: serving, not answering yet
    }
    monkeypatch.setattr(NodeProcess, "serving", property(lambda self: True))
    monkeypatch.setattr(cluster, "statuses", lambda among=None: dict(views))
    assert cluster.find_leader() is cluster.nodes[0]
    assert cluster.find_leader(settled=True) is None
    views[c] = view("follower", 1, None)  # answers, has not seen the election yet
    assert cluster.find_leader(settled=True) is None
    views[c] = view("follower", 2, a)
    assert cluster.find_leader(settled=True) is cluster.nodes[0]


@pytest.mark.skipif(not EPHEMERAL_RANGE_FILE.exists(), reason="no ephemeral port range here")
def test_free_ports_are_picked_below_the_ephemeral_range() -> None:
    """An outgoing connection takes its local port from the ephemeral range: a port picked
    there could be taken between `free_ports` and the server's bind (a CI run lost a test
    to exactly that). Ports and their gRPC companions come from below it."""
    low = int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    ports = free_ports(30)
    assert len(set(ports)) == 30
    assert all(port + GRPC_PORT_OFFSET < low for port in ports), ports
    for port in (*ports, *(p + GRPC_PORT_OFFSET for p in ports)):  # released, bindable
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


def log_of(log_format: LogFormat, fail: bool) -> str:
    """What a node's own log setup writes for a request naming the word and, if `fail`, for
    a handler that raised."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        JsonFormatter() if log_format is LogFormat.JSON else logging.Formatter(TEXT_FORMAT)
    )
    logger = logging.getLogger("naraft.test.tracebacks")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning('127.0.0.1 "GET /x?a=Traceback%20(most%20recent HTTP/1.1" 400')
        logger.warning("Traceback (most recent call last): quoted in a message")
        if fail:
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("unhandled error in GET /x")
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_tracebacks_are_found_in_either_log_format_and_a_request_naming_one_is_not(
    log_format: LogFormat,
) -> None:
    assert tracebacks_in(log_of(log_format, fail=False)) == []
    (found,) = tracebacks_in(log_of(log_format, fail=True))
    assert "unhandled error in GET /x" in found
    assert "ValueError: boom" in found
    assert "after" not in found
