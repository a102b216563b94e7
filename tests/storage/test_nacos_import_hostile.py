"""`naraft import-nacos` against a hostile data directory: symlinks out of the tree, files over
the size cap, numbers too large for any integer, nesting past the recursion limit, wrong types,
bytes that are not UTF-8, special files. Each bad file is listed by name with a one-line
reason, every good one is still read, the command exits 1 and never prints a traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from naraft.cli_import import import_nacos
from naraft.storage.nacos_import import NacosFormatError, find_data_dir, read_nacos_dir

LIST_PREFIX = "com.alibaba.nacos.naming.iplist.public##DEFAULT_GROUP@@"
META_PREFIX = "com.alibaba.nacos.naming.domains.meta.public##DEFAULT_GROUP@@"


def _datum(service: str, ip: str = "10.0.0.1") -> str:
    key = f"{LIST_PREFIX}{service}"
    return json.dumps({"key": key, "value": {"instanceList": [{"ip": ip, "port": 8080}]}})


def _home(tmp_path: Path) -> tuple[Path, Path]:
    """A Nacos home with one good instance list; returns (home, data/naming/data/public)."""
    home = tmp_path / "nacos"
    public = home / "data" / "naming" / "data" / "public"
    public.mkdir(parents=True)
    (home / "data" / "naming" / "meta.properties").write_text("term=3\n")
    (public / f"{LIST_PREFIX}good").write_text(_datum("good"))
    return home, public


def _reasons(home: Path, **options: int) -> dict[str, str]:
    data = read_nacos_dir(home, **options)
    assert [lst.service_name for lst in data.instance_lists] == ["good"]
    return {bad.path.name: bad.reason for bad in data.unreadable}


def test_a_symlink_out_of_the_data_directory_is_listed_and_never_opened(tmp_path: Path) -> None:
    home, public = _home(tmp_path)
    outside = tmp_path / "secret"
    outside.write_text(_datum("stolen"))
    (public / f"{LIST_PREFIX}stolen").symlink_to(outside)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / f"{LIST_PREFIX}far").write_text(_datum("far"))
    (public.parent / "linked-namespace").symlink_to(elsewhere, target_is_directory=True)
    reasons = _reasons(home)
    assert "symlink out of" in reasons[f"{LIST_PREFIX}stolen"]
    assert "symlink out of" in reasons["linked-namespace"]


def test_a_symlink_that_stays_inside_the_data_directory_is_followed(tmp_path: Path) -> None:
    home, public = _home(tmp_path)
    (public / "kept-aside").write_text(_datum("aside"))
    (public / f"{LIST_PREFIX}aside").symlink_to(public / "kept-aside")
    data = read_nacos_dir(home)
    assert sorted(lst.service_name for lst in data.instance_lists) == ["aside", "good"]
    assert not data.unreadable


def test_a_dangling_or_looping_symlink_is_listed(tmp_path: Path) -> None:
    home, public = _home(tmp_path)
    (public / f"{LIST_PREFIX}dangling").symlink_to(public / "nothing-here")
    (public / f"{LIST_PREFIX}loop").symlink_to(public / f"{LIST_PREFIX}loop")
    reasons = _reasons(home)
    assert reasons[f"{LIST_PREFIX}dangling"].startswith("cannot be read")
    assert reasons[f"{LIST_PREFIX}loop"].startswith("cannot be read")


def test_a_data_directory_that_is_a_symlink_out_of_the_home_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "nacos"
    (home / "data" / "naming").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / "data" / "naming" / "data").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(NacosFormatError, match="symlink out of"):
        find_data_dir(home)


def test_a_file_over_the_size_cap_is_listed_by_size_and_not_read(tmp_path: Path) -> None:
    home, public = _home(tmp_path)
    big = public / f"{LIST_PREFIX}big"
    with big.open("wb") as sparse:
        sparse.truncate(17 * 1024 * 1024)  # sparse: nothing is written, nothing must be read
    reasons = _reasons(home)
    assert reasons[f"{LIST_PREFIX}big"] == f"{17 << 20} bytes, over the {16 << 20}-byte cap"
    small_cap = _reasons(home, max_file_bytes=1000)
    assert "over the 1000-byte cap" in small_cap[f"{LIST_PREFIX}big"]


def test_meta_properties_out_of_the_tree_is_listed_and_the_term_is_zero(tmp_path: Path) -> None:
    home, _public = _home(tmp_path)
    properties = home / "data" / "naming" / "meta.properties"
    properties.unlink()
    (tmp_path / "elsewhere.properties").write_text("term=99\n")
    properties.symlink_to(tmp_path / "elsewhere.properties")
    data = read_nacos_dir(home)
    assert data.term == 0
    assert [bad.path.name for bad in data.unreadable] == ["meta.properties"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"key": "' + LIST_PREFIX.encode() + b'x", "value": [{"ip": "a", "port": '
         + b"9" * 5000 + b"}]}", "a number with 5000 digits"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"key": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply"),
        (b'{"key": "' + LIST_PREFIX.encode() + b'x", "value": 1e999}', "out of range"),
        (b'{"key": "' + LIST_PREFIX.encode() + b'x", "value": NaN}', "NaN is not"),
        (b'{"key": "' + LIST_PREFIX.encode() + b'x", "value": "no"}', "neither"),
        (b'{"key": 7, "value": {"instanceList": []}}', "does not start with"),
        (b'{"key": "' + LIST_PREFIX.encode() + b'x", "value": [{"ip": "a", "port": true}]}',
         "has no ip/port"),
        (b'{"key": "' + LIST_PREFIX.encode() + b'x", "value": [{"ip": "a", "port": 70000}]}',
         "not in 1..65535"),
        (b'{"key": "' + LIST_PREFIX.encode() + b'x", "value": [{"ip": "\\udc80", "port": 1}]}',
         "lone surrogate"),
        (b'{"key": "\xff\xfe"}', "not UTF-8"),
        (b'{"key": "' + LIST_PREFIX.encode() + b'x", "value": [{"ip": "a", "port": 1, '
         b'"weight": ' + b"1" * 19 + b"}]}", ""),  # 19 digits: a 64-bit integer, accepted
    ],
    ids=[
        "5000-digits", "deep-array", "deep-key", "huge-float", "nan", "wrong-value-type",
        "key-not-a-string", "bool-port", "port-out-of-range", "lone-surrogate", "not-utf8",
        "19-digits-ok",
    ],
)  # fmt: skip
def test_each_unreadable_file_is_named_with_a_one_line_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    home, public = _home(tmp_path)
    (public / f"{LIST_PREFIX}bad").write_bytes(content)
    data = read_nacos_dir(home)
    if not reason:
        assert not data.unreadable
        return
    assert "good" in {lst.service_name for lst in data.instance_lists}
    (bad,) = data.unreadable
    assert bad.path.name == f"{LIST_PREFIX}bad"
    assert reason in bad.reason
    assert "\n" not in bad.reason
    assert len(bad.reason) <= 200


def test_a_deep_service_metadata_file_and_a_fifo_do_not_stop_the_import(tmp_path: Path) -> None:
    home, public = _home(tmp_path)
    (public / f"{META_PREFIX}deep").write_text('{"value": {"metadata": ' + "[" * 60_000 + "}}")
    os.mkfifo(public / f"{LIST_PREFIX}fifo")  # opening it would block forever
    data = read_nacos_dir(home)
    assert {bad.path.name for bad in data.unreadable} == {f"{META_PREFIX}deep"}
    assert (public / f"{LIST_PREFIX}fifo", "not a regular file (never opened)") in data.skipped


def test_the_command_lists_every_bad_file_exits_1_and_prints_no_traceback(tmp_path: Path) -> None:
    home, public = _home(tmp_path)
    (public / f"{LIST_PREFIX}digits").write_text('{"key": ' + "9" * 5000 + "}")
    (public / f"{LIST_PREFIX}[red]markup").write_text('{"key": "[/] [bold]"}')
    (public / f"{LIST_PREFIX}deep").write_text("[" * 100_000)
    with (public / f"{LIST_PREFIX}big").open("wb") as sparse:
        sparse.truncate(2 << 20)
    (public / f"{LIST_PREFIX}out").symlink_to("/etc/passwd")
    undecodable = os.fsdecode(os.fsencode(public / f"{LIST_PREFIX}nonutf8-") + b"\xff")
    Path(undecodable).write_text(_datum("x"))
    run = CliRunner().invoke(import_nacos, [str(home), "--dry-run", "--max-file-mib", "1"])
    assert run.exit_code == 1, run.output
    assert run.exception is None or isinstance(run.exception, SystemExit), run.exception
    assert "Traceback" not in run.output
    lines = [line for line in run.output.splitlines() if line.startswith("unreadable")]
    assert len(lines) == 5, run.output
    for name, why in [
        ("digits", "a number with 5000 digits"),
        ("[red]markup", "does not start with"),
        ("deep", "nested too deeply"),
        ("big", "over the 1048576-byte cap"),
        ("out", "a symlink out of"),
    ]:
        assert any(f"@@{name}: " in line and why in line for line in lines), (name, run.output)
    assert "2 instance lists" in run.output  # good, and the one with an undecodable name


def test_a_namespace_directory_that_cannot_be_listed_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, public = _home(tmp_path)
    locked = public.parent / "locked"
    locked.mkdir()
    listing = Path.iterdir

    def iterdir(self: Path) -> Iterator[Path]:
        if self.name == "locked":  # chmod 0 does not stop root, who runs these tests in CI
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    reasons = _reasons(home)
    assert reasons["locked"].startswith("cannot be listed: [Errno 13] Permission denied")
