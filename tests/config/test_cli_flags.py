"""Flag edges of `naraft server`, in-process (click's runner): the log level in any case,
from the flag, the environment and the file; the access log switch; a bad choice is a
usage error naming the flag."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from naraft.cli import main
from naraft.config import LogFormat
from naraft.config_sources import build_config, merge

BASE = {"id": "127.0.0.1:18848", "data-dir": "/tmp/unused", "standalone": True}


def test_log_level_is_taken_in_any_case_from_every_source(tmp_path: Path) -> None:
    file = tmp_path / "naraft.toml"
    file.write_text('log-level = "warning"\nlog-format = "JSON"\n')
    from_file = build_config({**BASE, **merge(flags={}, env={}, file=file)}, {})
    assert from_file.log.level == "WARNING"
    assert LogFormat(from_file.log.format) is LogFormat.JSON
    from_env = merge(flags={}, env={"NARAFT_LOG_LEVEL": "debug"}, file=file)
    assert build_config({**BASE, **from_env}, {}).log.level == "DEBUG"


def test_the_log_level_flag_ignores_case() -> None:
    # accepted: the one line is about the next thing missing, not the level
    result = CliRunner().invoke(main, ["server", "--log-level", "info", "--standalone"], env={})
    assert result.exit_code == 1
    assert result.output.strip() == ("naraft: missing --id (or NARAFT_ID, or id in --config)")


def test_a_log_level_out_of_the_list_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["server", "--log-level", "loud"])
    assert result.exit_code == 2
    assert "Invalid value for '--log-level'" in result.output


def test_the_access_log_is_on_unless_switched_off() -> None:
    assert build_config(BASE, {}).log.access_log is True
    off = merge(flags={}, env={"NARAFT_ACCESS_LOG": "false"}, file=None)
    assert build_config({**BASE, **off}, {}).log.access_log is False


def test_the_access_log_flag_has_its_negative_form() -> None:
    result = CliRunner().invoke(main, ["server", "--no-access-log", "--standalone"], env={})
    assert result.exit_code == 1
    assert "missing --id" in result.output
