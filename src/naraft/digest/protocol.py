"""The digest-sync wire format: paths, request signing, chunk and batch encodings.

Routes (all under `/nacos/v1/ns/raft/`, all signed with the cluster secret):

- `POST digest` -> JSON `{"session", "index", "term", "keys", "chunks", "chunkKeys",
  "checksum"}`: the leader freezes its applied state at `index` (term `term`) as a session.
- `GET digest/{session}/{chunk}` -> gzip'd JSON `[[key, version, hash], ...]`, chunk `chunk`
  of the session's keys (`chunkKeys` per chunk, so a million keys never make one message).
- `POST datums` `{"session", "keys": [...]}` -> gzip'd JSON `[[key, version, value_b64], ...]`
  from the session's frozen state (a key it does not hold is left out).
- `POST checksum` `{"index", "checksum", "term", "leader"}` -> 204: the leader's state
  checksum at its applied index (the seed's beat, as a verifier).

Every request is signed like a peer batch (`naraft.transport.signing`): the signature covers
the method, the path, the cluster id, the sender, the recipient (the node asked), the time,
a fresh nonce and the body, and the receiver refuses a replay within its window, so a
captured "create a session" request cannot make the leader copy its state again. A
follower asks the leader; a node that does not lead answers 409 with `{"leader": ...}`; an
unknown or expired session 410. A node without peers (standalone) has none of these routes.
"""

from __future__ import annotations

import base64
import gzip
from typing import Any, Final

import orjson

from naraft.state.datums import Datum
from naraft.transport.signing import SENDER_HEADER as SENDER_HEADER

RAFT_BASE: Final = "/nacos/v1/ns/raft"
DIGEST_PATH: Final = f"{RAFT_BASE}/digest"
DATUMS_PATH: Final = f"{RAFT_BASE}/datums"
CHECKSUM_PATH: Final = f"{RAFT_BASE}/checksum"
DEFAULT_CHUNK_KEYS: Final = 10_000
MAX_BATCH_KEYS: Final = 5_000  # per datums request, whatever the client asks


class DigestProtocolError(Exception):
    """A digest-sync answer or request is malformed: `what` names the part, `problem` says why."""

    def __init__(self, what: str, problem: str) -> None:
        self.what = what
        self.problem = problem
        super().__init__(f"{what}: {problem}")


def encode_digest_chunk(rows: list[tuple[str, int, int]]) -> bytes:
    return gzip.compress(orjson.dumps(rows), compresslevel=1)


def decode_digest_chunk(payload: bytes) -> list[tuple[str, int, int]]:
    rows = _gunzip_json(payload, "digest chunk")
    result: list[tuple[str, int, int]] = []
    for row in rows:
        _check_row(row, int, "digest chunk")
        result.append((row[0], row[1], row[2]))
    return result


def encode_datums(rows: list[tuple[str, Datum]]) -> bytes:
    return gzip.compress(
        orjson.dumps(
            [(key, datum.version, base64.b64encode(datum.value).decode()) for key, datum in rows]
        ),
        compresslevel=1,
    )


def decode_datums(payload: bytes) -> dict[str, Datum]:
    rows = _gunzip_json(payload, "datums")
    result: dict[str, Datum] = {}
    for row in rows:
        _check_row(row, str, "datums")
        result[row[0]] = Datum(base64.b64decode(row[2]), row[1])
    return result


def _check_row(row: object, third: type, what: str) -> None:
    """A row is `[key: str, version: int, third]`; anything else is a protocol error."""
    if (
        not isinstance(row, list)
        or len(row) != 3
        or not isinstance(row[0], str)
        or not isinstance(row[1], int)
        or not isinstance(row[2], third)
    ):
        raise DigestProtocolError(what, f"bad row {str(row)[:80]}")


def _gunzip_json(payload: bytes, what: str) -> list[Any]:
    try:
        data = orjson.loads(gzip.decompress(payload))
    except (OSError, EOFError, orjson.JSONDecodeError) as error:
        raise DigestProtocolError(what, f"not gzip'd JSON: {error}") from None
    if not isinstance(data, list):
        raise DigestProtocolError(what, "not a JSON list")
    return data
