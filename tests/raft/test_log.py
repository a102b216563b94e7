"""RaftLog as tables: term lookups, matching, slicing, truncation, compaction.

Table-driven, as docs/conventions.md#tests asks.

Logs are written as in the scenario files: `"1/1 2/1 3/2"` is three entries, index/term.
A snapshot boundary is written `snap=5/2`.
"""

from __future__ import annotations

import pytest

from naraft.raft import Entry, Index, InvariantError, SnapshotMeta, Term
from naraft.raft.log import RaftLog

COMMAND_BYTES = 4
ENTRY_BYTES = COMMAND_BYTES + 16  # the overhead RaftLog.slice counts per entry


def entries_of(spec: str) -> tuple[Entry, ...]:
    """`"1/1 2/1 3/2"` as entries, each with a COMMAND_BYTES command."""
    entries: list[Entry] = []
    for word in spec.split():
        index, term = (int(part) for part in word.split("/"))
        entries.append(Entry(term=Term(term), index=Index(index), command=b"c" * COMMAND_BYTES))
    return tuple(entries)


def make_log(spec: str, *, snap: str | None = None) -> RaftLog:
    snapshot = SnapshotMeta()
    if snap is not None:
        index, term = (int(part) for part in snap.split("/"))
        snapshot = SnapshotMeta(index=Index(index), term=Term(term))
    return RaftLog(entries_of(spec), snapshot)


def positions(entries: tuple[Entry, ...]) -> str:
    return " ".join(f"{entry.index}/{entry.term}" for entry in entries)


LOG = "1/1 2/1 3/2 4/2 5/2 6/4"


@pytest.mark.parametrize(
    ("spec", "snap", "index", "expected"),
    [
        pytest.param("", None, 0, 0, id="empty-log-index-0"),
        pytest.param("", None, 1, None, id="empty-log-beyond"),
        pytest.param(LOG, None, 0, 0, id="index-0-is-term-0"),
        pytest.param(LOG, None, 1, 1, id="first"),
        pytest.param(LOG, None, 4, 2, id="middle"),
        pytest.param(LOG, None, 6, 4, id="last"),
        pytest.param(LOG, None, 7, None, id="beyond-last"),
        pytest.param("6/3 7/3", "5/2", 5, 2, id="snapshot-boundary"),
        pytest.param("6/3 7/3", "5/2", 4, None, id="compacted-away"),
        pytest.param("6/3 7/3", "5/2", 6, 3, id="first-after-snapshot"),
    ],
)
def test_term_at(spec: str, snap: str | None, index: int, expected: int | None) -> None:
    assert make_log(spec, snap=snap).term_at(Index(index)) == expected


@pytest.mark.parametrize(
    ("spec", "snap", "index", "term", "expected"),
    [
        pytest.param(LOG, None, 0, 0, True, id="empty-prefix-always-matches"),
        pytest.param(LOG, None, 3, 2, True, id="same-term"),
        pytest.param(LOG, None, 3, 1, False, id="other-term"),
        pytest.param(LOG, None, 7, 4, False, id="beyond-last"),
        pytest.param("6/3", "5/2", 5, 2, True, id="snapshot-boundary"),
        pytest.param("6/3", "5/2", 5, 1, False, id="snapshot-boundary-other-term"),
        pytest.param("6/3", "5/2", 3, 9, True, id="compacted-entries-are-committed"),
    ],
)
def test_matches(spec: str, snap: str | None, index: int, term: int, expected: bool) -> None:
    assert make_log(spec, snap=snap).matches(Index(index), Term(term)) is expected


@pytest.mark.parametrize(
    ("spec", "snap", "start", "end", "max_bytes", "expected"),
    [
        pytest.param(LOG, None, 1, 7, None, LOG, id="everything"),
        pytest.param(LOG, None, 2, 4, None, "2/1 3/2", id="end-is-exclusive"),
        pytest.param(LOG, None, 5, 100, None, "5/2 6/4", id="end-clamped-to-log"),
        pytest.param(LOG, None, 7, 9, None, "", id="start-beyond-log"),
        pytest.param(LOG, None, 3, 3, None, "", id="empty-range"),
        pytest.param("6/3 7/3 8/3", "5/2", 1, 8, None, "6/3 7/3", id="start-clamped-to-snapshot"),
        pytest.param(LOG, None, 1, 7, 2 * ENTRY_BYTES, "1/1 2/1", id="max-bytes-cuts"),
        pytest.param(LOG, None, 1, 7, 2 * ENTRY_BYTES + 1, "1/1 2/1", id="max-bytes-partial"),
        pytest.param(LOG, None, 3, 7, 1, "3/2", id="max-bytes-at-least-one"),
        pytest.param(LOG, None, 1, 3, 100 * ENTRY_BYTES, "1/1 2/1", id="max-bytes-not-reached"),
    ],
)
def test_slice(
    spec: str, snap: str | None, start: int, end: int, max_bytes: int | None, expected: str
) -> None:
    log = make_log(spec, snap=snap)
    assert positions(log.slice(Index(start), Index(end), max_bytes=max_bytes)) == expected


@pytest.mark.parametrize(
    ("spec", "snap", "index", "expected_log", "expected_last"),
    [
        pytest.param(LOG, None, 3, "1/1 2/1", 2, id="middle"),
        pytest.param(LOG, None, 1, "", 0, id="everything"),
        pytest.param(LOG, None, 6, "1/1 2/1 3/2 4/2 5/2", 5, id="last-only"),
        pytest.param(LOG, None, 7, LOG, 6, id="beyond-last-is-a-no-op"),
        pytest.param("6/3 7/3", "5/2", 6, "", 5, id="down-to-the-snapshot"),
    ],
)
def test_truncate_from(
    spec: str, snap: str | None, index: int, expected_log: str, expected_last: int
) -> None:
    log = make_log(spec, snap=snap)
    log.truncate_from(Index(index))
    assert positions(log.entries()) == expected_log
    assert log.last_index == expected_last


def test_truncate_into_the_snapshot_is_an_invariant_error() -> None:
    log = make_log("6/3 7/3", snap="5/2")
    with pytest.raises(InvariantError):
        log.truncate_from(Index(5))


@pytest.mark.parametrize(
    ("spec", "snap", "index", "expected"),
    [
        pytest.param(LOG, None, 5, 3, id="run-start-in-middle"),
        pytest.param(LOG, None, 3, 3, id="already-first-of-run"),
        pytest.param(LOG, None, 2, 1, id="first-run"),
        pytest.param(LOG, None, 6, 6, id="single-entry-run"),
        pytest.param("6/3 7/3 8/3", "5/3", 8, 6, id="stops-at-first-held-entry"),
    ],
)
def test_first_index_of_term_at(spec: str, snap: str | None, index: int, expected: int) -> None:
    assert make_log(spec, snap=snap).first_index_of_term_at(Index(index)) == expected


@pytest.mark.parametrize(
    ("spec", "term", "expected"),
    [
        pytest.param(LOG, 2, 5, id="last-of-a-run"),
        pytest.param(LOG, 1, 2, id="earlier-run"),
        pytest.param(LOG, 4, 6, id="last-entry"),
        pytest.param(LOG, 3, None, id="term-skipped"),
        pytest.param(LOG, 5, None, id="later-term"),
        pytest.param("", 1, None, id="empty-log"),
    ],
)
def test_last_index_of_term(spec: str, term: int, expected: int | None) -> None:
    assert make_log(spec).last_index_of_term(Term(term)) == expected


@pytest.mark.parametrize(
    ("spec", "snap", "compact_to", "expected_log", "expected_first", "expected_last"),
    [
        pytest.param(LOG, None, "3/2", "4/2 5/2 6/4", 4, 6, id="prefix"),
        pytest.param(LOG, None, "6/4", "", 7, 6, id="everything"),
        pytest.param(LOG, None, "9/5", "", 10, 9, id="past-the-end-resets"),
        pytest.param("6/3 7/3", "5/2", "4/2", "6/3 7/3", 6, 7, id="older-snapshot-is-a-no-op"),
    ],
)
def test_compact(
    spec: str,
    snap: str | None,
    compact_to: str,
    expected_log: str,
    expected_first: int,
    expected_last: int,
) -> None:
    log = make_log(spec, snap=snap)
    index, term = (int(part) for part in compact_to.split("/"))
    log.compact(SnapshotMeta(index=Index(index), term=Term(term)))
    assert positions(log.entries()) == expected_log
    assert (log.first_index, log.last_index) == (expected_first, expected_last)


def test_compact_keeps_the_boundary_term() -> None:
    log = make_log(LOG)
    log.compact(SnapshotMeta(index=Index(4), term=Term(2)))
    assert (log.term_at(Index(4)), log.term_at(Index(3)), log.last_term) == (2, None, 4)


def test_compact_with_a_wrong_term_is_an_invariant_error() -> None:
    log = make_log(LOG)
    with pytest.raises(InvariantError):
        log.compact(SnapshotMeta(index=Index(4), term=Term(1)))


def test_a_log_with_a_gap_is_an_invariant_error() -> None:
    with pytest.raises(InvariantError):
        make_log("1/1 3/1")


def test_append_must_follow_the_last_index() -> None:
    log = make_log("1/1")
    with pytest.raises(InvariantError):
        log.append(Entry(term=Term(1), index=Index(3)))
    log.append(Entry(term=Term(1), index=Index(2)))
    assert (log.last_index, log.last_term) == (2, 1)
