"""The export zip reader's limits, and the `.metadata.yml` parser: strict, bounded, and
reading back what the writer writes (and what YAML itself reads, for the subset)."""

from __future__ import annotations

import io
import zipfile

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from naraft.configs import archive
from naraft.configs.archive import ArchiveError, ArchiveLimits, ExportItem


def zip_of(entries: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for name, body in entries.items():
            out.writestr(name, body)
    return buffer.getvalue()


def test_entry_count_is_checked_before_reading() -> None:
    limits = ArchiveLimits(max_entry_bytes=100, max_entries=3)
    with pytest.raises(ArchiveError, match="at most 3 configs") as refused:
        archive.read_archive(zip_of({f"G/d{i}": "x" for i in range(5)}), limits)
    assert refused.value.code == archive.PARSING_DATA_FAILED


def test_total_inflated_bytes_are_bounded() -> None:
    limits = ArchiveLimits(max_entry_bytes=100, max_total_bytes=250)
    entries = {f"G/d{i}": f"{i}" * 90 for i in range(3)}
    with pytest.raises(ArchiveError, match="250 bytes in all"):
        archive.read_archive(zip_of(entries), limits)


def test_a_duplicate_entry_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        out.writestr("G/a", "1")
        with pytest.warns(UserWarning):
            out.writestr("G/a", "2")
    with pytest.raises(ArchiveError, match="twice"):
        archive.read_archive(buffer.getvalue(), ArchiveLimits(max_entry_bytes=100))


def test_only_stored_and_deflated_entries_are_taken() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_BZIP2) as out:
        out.writestr("G/a", "x" * 50)
    with pytest.raises(ArchiveError, match="only stored and deflated"):
        archive.read_archive(buffer.getvalue(), ArchiveLimits(max_entry_bytes=100))
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", compression=zipfile.ZIP_STORED) as out:
        out.writestr("G/a", "x")
    assert len(archive.read_archive(stored.getvalue(), ArchiveLimits(max_entry_bytes=9))) == 1


def test_folders_are_skipped_as_nacos_does() -> None:
    items = archive.read_archive(zip_of({"G/": "", "G/a": "x"}), ArchiveLimits(max_entry_bytes=9))
    assert [(i.group, i.data_id, i.content) for i in items] == [("G", "a", "x")]


def test_what_snakeyaml_writes_is_read() -> None:
    text = (
        "metadata:\n"
        "- appName: shop\n"
        "  dataId: app.yaml\n"
        "  desc: a description long enough that SnakeYAML folds it onto the line\n"
        "    after\n"
        "  group: DEFAULT_GROUP\n"
        "  type: yaml\n"
        "- dataId: '123'\n"
        '  group: "caf\\xe9"\n'
        "  type: text\n"
    )
    assert archive.parse_metadata_v2(text, 10) == [
        {
            "appName": "shop",
            "dataId": "app.yaml",
            "desc": "a description long enough that SnakeYAML folds it onto the line after",
            "group": "DEFAULT_GROUP",
            "type": "yaml",
        },
        {"dataId": "123", "group": "café", "type": "text"},
    ]
    assert yaml.safe_load(text)["metadata"] == archive.parse_metadata_v2(text, 10)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("metadata: []\n", id="empty-list"),
        pytest.param("other:\n- dataId: a\n", id="wrong-root"),
        pytest.param("metadata:\n- dataId: *alias\n", id="alias"),
        pytest.param("metadata:\n- dataId: !!str a\n", id="tag"),
        pytest.param("metadata:\n- dataId: |\n    a\n", id="block-scalar"),
        pytest.param("metadata:\n- dataId: 'a\n", id="unterminated"),
        pytest.param('metadata:\n- dataId: "a\\q"\n', id="bad-escape"),
        pytest.param("metadata:\n- dataId: a\n  dataId: b\n", id="duplicate-key"),
        pytest.param("metadata:\n- dataId: a\n    - x: y\n  x: 1\n", id="unknown-key"),
        pytest.param("metadata:\n\t- dataId: a\n", id="tab"),
        pytest.param("metadata:\n- dataId: a\n" * 2, id="root-twice"),
    ],
)
def test_anything_else_is_metadata_illegal(text: str) -> None:
    with pytest.raises(ArchiveError) as refused:
        archive.parse_metadata_v2(text, 10)
    assert refused.value.code == archive.METADATA_ILLEGAL


def test_items_are_bounded() -> None:
    text = "metadata:\n" + "- dataId: a\n  group: G\n  type: text\n" * 4
    with pytest.raises(ArchiveError, match="more than 3 items"):
        archive.parse_metadata_v2(text, 3)


names = st.text(st.sampled_from("abcXYZ019_-.:é"), min_size=1, max_size=20)
free_text = st.text(max_size=60)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(names, names, st.sampled_from(["text", "yaml", "json"]), free_text, free_text),
        min_size=1,
        max_size=5,
    )
)
def test_what_the_writer_writes_is_read_back_by_both_parsers(
    rows: list[tuple[str, str, str, str, str]],
) -> None:
    items = [
        ExportItem(group=g, data_id=d, content="c", type=t, app_name=a, desc=s)
        for g, d, t, a, s in rows
    ]
    text = archive.metadata_v2_text(items)
    expected = [
        {
            k: v
            for k, v in (
                ("appName", i.app_name),
                ("dataId", i.data_id),
                ("desc", i.desc),
                ("group", i.group),
                ("type", i.type),
            )
            if v or k in ("dataId", "group", "type")
        }
        for i in items
    ]
    assert archive.parse_metadata_v2(text, 10) == expected
    assert yaml.safe_load(text)["metadata"] == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_is_parsed_or_refused_never_crashes(text: str) -> None:
    try:
        parsed = archive.parse_metadata_v2("metadata:\n" + text, 5)
    except ArchiveError as error:
        code = error.code
        parsed = None
    if parsed is None:
        assert code == archive.METADATA_ILLEGAL
        return
    assert 1 <= len(parsed) <= 5
    assert all(isinstance(v, str) for item in parsed for v in item.values())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["dataId", "group", "type", "appName", "desc"]),
            st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=30),
        ),
        min_size=1,
        max_size=5,
        unique_by=lambda pair: pair[0],
    )
)
def test_plain_and_single_quoted_values_agree_with_yaml(pairs: list[tuple[str, str]]) -> None:
    """Values written as YAML would single-quote them are read as YAML reads them."""
    lines = ["metadata:"]
    for position, (key, value) in enumerate(pairs):
        quoted = "'" + value.replace("'", "''") + "'"
        lines.append(f"{'- ' if position == 0 else '  '}{key}: {quoted}")
    text = "\n".join(lines) + "\n"
    try:
        reference = yaml.safe_load(text)["metadata"]
    except yaml.YAMLError:
        return  # not YAML at all: nothing to agree with
    ours = archive.parse_metadata_v2(text, 5)
    assert ours == reference


VALID = zip_of(
    {
        "DEFAULT_GROUP/app.yaml": "a: 1\n",
        "G/b": "b",
        archive.META_V2: archive.metadata_v2_text(
            [
                ExportItem(group="DEFAULT_GROUP", data_id="app.yaml", content="", type="yaml"),
                ExportItem(group="G", data_id="b", content=""),
            ]
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8))
def test_a_damaged_zip_is_read_or_refused_never_crashes(flips: list[tuple[int, int]]) -> None:
    """Any byte of a real export changed: the reader answers items or an ArchiveError,
    nothing else (no zlib, struct or Unicode error escapes)."""
    damaged = bytearray(VALID)
    for at, value in flips:
        damaged[at] = value
    try:
        items = archive.read_archive(bytes(damaged), ArchiveLimits(max_entry_bytes=1000))
    except ArchiveError:
        return
    assert len(items) <= 3


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_are_read_or_refused_never_crash(data: bytes) -> None:
    try:
        items = archive.read_archive(b"PK\x03\x04" + data, ArchiveLimits(max_entry_bytes=1000))
    except ArchiveError:
        return
    assert isinstance(items, list)  # (random bytes can hold an empty zip's end record)
