"""The config tree: one precedence (flag > environment > file > default), one-line errors
naming the key, validation across groups, and the README's example file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from naraft.cli import main
from naraft.config import PROFILES, NodeConfig, Profile
from naraft.config_sources import (
    SETTINGS,
    ConfigError,
    build_config,
    from_env,
    from_file,
    merge,
)
from naraft.errors import InvalidArgumentError

REPO = Path(__file__).resolve().parents[2]
SECRET = {"NARAFT_CLUSTER_SECRET": "a-long-enough-cluster-secret"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "naraft.toml"
    path.write_text(text)
    return path


def standalone(tmp_path: Path, **more: object) -> dict[str, object]:
    return {"id": "127.0.0.1:8848", "data-dir": tmp_path, "standalone": True, **more}


def test_defaults_come_from_the_consumers_dataclasses(tmp_path: Path) -> None:
    config = build_config(standalone(tmp_path), {})
    assert config.timers == PROFILES[Profile.DEFAULT]
    assert config.http.max_params == 256
    assert config.push.ack_timeout_ms == 10_000
    assert config.digest.sync.batch_keys == 50
    assert config.compaction.keep_entries == 2_000
    assert config.standalone


def test_a_flag_beats_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    file = write(tmp_path, "tick-ms = 30\nmax-params = 7\nsweep-ms = 500\n")
    env = {"NARAFT_TICK_MS": "40", "NARAFT_MAX_PARAMS": "9"}
    values = merge(flags={"tick-ms": 50, **standalone(tmp_path)}, env=env, file=file)
    config = build_config(values, env)
    assert config.timers.tick_seconds == pytest.approx(0.05)  # flag
    assert config.http.max_params == 9  # environment over file
    assert config.health.sweep_interval_seconds == pytest.approx(0.5)  # file over default
    assert config.http.max_connections == 1000  # default


def test_connection_beats_default_to_5_s_and_stay_inside_the_unhealthy_timeout(
    tmp_path: Path,
) -> None:
    health = build_config(standalone(tmp_path), {}).health
    assert health.connection_beat_seconds == pytest.approx(5.0)
    values = standalone(tmp_path, **{"connection-beat-ms": 2000})
    assert build_config(values, {}).health.connection_beat_seconds == pytest.approx(2.0)
    values = standalone(tmp_path, **{"connection-beat-ms": 2000, "unhealthy-after-ms": 300})
    assert build_config(values, {}).health.connection_beat_seconds == pytest.approx(0.1)


def test_the_environment_names_the_config_file(tmp_path: Path) -> None:
    file = write(tmp_path, "max-params = 11\n")
    values = merge(flags=standalone(tmp_path), env={"NARAFT_CONFIG": str(file)}, file=None)
    assert build_config(values, {}).http.max_params == 11


def test_a_profile_is_the_base_that_timer_settings_adjust(tmp_path: Path) -> None:
    values = standalone(tmp_path, profile="nacos-legacy", **{"election-ticks": 40})
    timers = build_config(values, {}).timers
    assert timers.tick_seconds == PROFILES[Profile.NACOS_LEGACY].tick_seconds
    assert timers.election_ticks == 40


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tick_ms = 100\n", "unknown key 'tick_ms'"),
        ("tick-ms = 0\n", "tick-ms: must be an integer in 1..10000, not 0"),
        ('tick-ms = "100"\n', "tick-ms: must be an integer, not '100'"),
        ("standalone = 1\n", "standalone: must be true or false"),
        ("[http]\nmax-params = 3\n", "unknown key 'http'"),
        ("tick-ms = \n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_key(tmp_path: Path, text: str, needle: str) -> None:
    file = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        from_file(file)
    assert needle in str(caught.value)
    assert str(file) in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"NARAFT_TICK_MS": "fast"}, "NARAFT_TICK_MS: must be an integer in 1..10000, not 'fast'"),
        ({"NARAFT_PUSH_RETRIES": "101"}, "NARAFT_PUSH_RETRIES: must be an integer in 0..100"),
        ({"NARAFT_STANDALONE": "maybe"}, "NARAFT_STANDALONE: must be true or false"),
        ({"NARAFT_PROFILE": "turbo"}, "NARAFT_PROFILE: must be one of default, nacos-legacy"),
    ],
)
def test_a_bad_environment_value_is_one_line_naming_the_variable(
    env: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        from_env(env)


def test_the_cluster_token_is_a_setting_checked_once(tmp_path: Path) -> None:
    values = merge(flags=standalone(tmp_path), env={"NARAFT_CLUSTER_TOKEN": "inc-2"}, file=None)
    assert build_config(values, {}).cluster_token == "inc-2"
    with pytest.raises(InvalidArgumentError, match="--cluster-token: must be printable ASCII"):
        build_config(standalone(tmp_path, **{"cluster-token": "two words"}), {})


def test_a_restored_data_dirs_token_is_taken_unless_one_is_given(tmp_path: Path) -> None:
    """`naraft snapshot restore` leaves `cluster.token` in the data directory (docs/backup.md)."""
    assert build_config(standalone(tmp_path), {}).cluster_token == "naraft-cluster"
    (tmp_path / "cluster.token").write_text("restored-abc\n")
    assert build_config(standalone(tmp_path), {}).cluster_token == "restored-abc"
    given = standalone(tmp_path, **{"cluster-token": "mine"})
    assert build_config(given, {}).cluster_token == "mine"
    (tmp_path / "cluster.token").write_text("two words")
    with pytest.raises(ConfigError, match="cluster.token: --cluster-token: must be printable"):
        build_config(standalone(tmp_path), {})


def test_other_naraft_variables_are_not_settings() -> None:
    assert from_env({"NARAFT_FAILPOINTS": "x=1", "NARAFT_CLUSTER_SECRET": "s" * 20}) == {}


@pytest.mark.parametrize(
    ("more", "needle"),
    [
        (
            {"election-ticks": 3, "heartbeat-ticks": 3},
            "election_ticks must be greater than heartbeat_ticks",
        ),
        (
            {"max-append-kib": 65536, "peer-max-body-mib": 64},
            "max-append-kib: must be at most half of peer-max-body-mib",
        ),
    ],
)
def test_validation_across_groups_names_the_setting(
    tmp_path: Path, more: dict[str, object], needle: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=needle):
        build_config(standalone(tmp_path, **more), {})


def test_members_come_from_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of --peers, --cluster-conf"):
        build_config(standalone(tmp_path, peers=("127.0.0.1:8848",)), {})


def test_a_missing_id_names_every_place_it_may_come_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing --id \(or NARAFT_ID, or id in --config\)"):
        build_config({"data-dir": tmp_path, "standalone": True}, {})


def test_a_cluster_without_a_secret_is_refused(tmp_path: Path) -> None:
    peers = ("127.0.0.1:8848", "127.0.0.1:8849")
    values = {"id": peers[0], "data-dir": tmp_path, "peers": peers}
    with pytest.raises(InvalidArgumentError, match="needs a cluster secret"):
        build_config(values, {})
    assert build_config(values, SECRET).secret == SECRET["NARAFT_CLUSTER_SECRET"].encode()


def test_the_example_file_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # its paths are relative
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cluster.secret").write_text(SECRET["NARAFT_CLUSTER_SECRET"])
    (tmp_path / "data" / "cluster.secret").chmod(0o600)
    values = from_file(REPO / "docs" / "naraft.example.toml")
    config = build_config(values, {})
    assert config.secret == SECRET["NARAFT_CLUSTER_SECRET"].encode()
    assert isinstance(config, NodeConfig)
    assert config.peers == ("127.0.0.1:8848", "127.0.0.1:8849", "127.0.0.1:8850")
    assert config.timers == PROFILES[Profile.DEFAULT]
    assert not config.standalone
    assert config.cluster_token == "example-cluster-1"


def test_every_server_flag_shows_its_default_and_variable() -> None:
    help_text = " ".join(CliRunner().invoke(main, ["server", "--help"]).output.split())
    for setting in SETTINGS:
        assert setting.flag in help_text
        assert setting.env_var in help_text
        if setting.name not in ("id", "data-dir"):  # required: no default
            assert f"default: {setting.default()};" in help_text, setting.name


def test_the_command_refuses_a_bad_file_in_one_line(tmp_path: Path) -> None:
    file = write(tmp_path, "no-such-setting = 1\n")
    result = CliRunner().invoke(
        main, ["server", "--config", str(file), "--standalone", "--id", "127.0.0.1:8848"]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"naraft: config file {file}: unknown key 'no-such-setting'"
    ]


def test_the_server_command_applies_the_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[NodeConfig] = []
    monkeypatch.setattr("naraft.cli._run_until_signal", started.append)
    file = write(tmp_path, f'data-dir = "{tmp_path}"\nstandalone = true\ntick-ms = 30\n')
    file.write_text(file.read_text() + "max-params = 7\nidle-timeout-ms = 2000\n")
    result = CliRunner().invoke(
        main,
        ["server", "--config", str(file), "--id", "127.0.0.1:8848", "--tick-ms", "50"],
        env={"NARAFT_TICK_MS": "40", "NARAFT_MAX_PARAMS": "9"},
    )
    assert result.exit_code == 0, result.output
    (config,) = started
    assert config.timers.tick_seconds == pytest.approx(0.05)
    assert config.http.max_params == 9
    assert config.http.idle_timeout_seconds == pytest.approx(2.0)
    assert config.http.body_timeout_seconds == pytest.approx(15.0)
    assert config.data_dir == tmp_path
    assert config.standalone
