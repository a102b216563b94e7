"""Auth settings in the config tree: secure by default, and the admin password's sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from naraft.config import AuthMode, is_loopback
from naraft.config_sources import ADMIN_PASSWORD_ENV_VAR, ConfigError, build_config, merge


def config_for(values: dict[str, object], env: dict[str, str] | None = None) -> object:
    base: dict[str, object] = {"id": "127.0.0.1:8848", "data-dir": Path("d"), "standalone": True}
    return build_config({**base, **values}, env or {})


@pytest.mark.parametrize(
    ("listen", "mode", "enabled"),
    [
        ("127.0.0.1:8848", None, False),
        ("localhost:8848", None, False),
        ("::1:8848", None, False),
        ("0.0.0.0:8848", None, True),
        ("10.0.0.5:8848", None, True),
        ("node.example:8848", None, True),  # a name: it may resolve anywhere
        ("0.0.0.0:8848", "off", False),
        ("127.0.0.1:8848", "on", True),
    ],
)
def test_auth_is_on_unless_loopback_or_said_otherwise(
    listen: str, mode: str | None, enabled: bool
) -> None:
    values: dict[str, object] = {"listen": listen}
    if mode is not None:
        values["auth"] = mode
    config = config_for(values)
    assert config.auth_enabled is enabled  # type: ignore[attr-defined]


def test_auth_settings_from_flag_env_and_file(tmp_path: Path) -> None:
    toml = tmp_path / "n.toml"
    toml.write_text('auth = "on"\ntoken-ttl-seconds = 60\nadmin-password-file = "pw"\n')
    merged = merge(flags={}, env={"NARAFT_TOKEN_TTL_SECONDS": "120"}, file=toml)
    config = config_for(merged, {ADMIN_PASSWORD_ENV_VAR: " from-env "})
    auth = config.auth  # type: ignore[attr-defined]
    assert (auth.mode, auth.token_ttl_seconds, auth.admin_password_file) == (
        AuthMode.ON, 120, Path("pw"),
    )  # fmt: skip
    assert auth.admin_password == "from-env"
    assert "from-env" not in repr(config)  # never in a log line


def test_bad_auth_values_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="NARAFT_AUTH"):
        merge(flags={}, env={"NARAFT_AUTH": "maybe"}, file=None)
    with pytest.raises(ConfigError, match="NARAFT_TOKEN_TTL_SECONDS"):
        merge(flags={}, env={"NARAFT_TOKEN_TTL_SECONDS": "0"}, file=None)


def test_loopback() -> None:
    assert is_loopback("127.0.0.2")
    assert is_loopback("::1")
    assert not is_loopback("::")


def test_an_admin_password_bcrypt_cannot_take_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="NARAFT_ADMIN_PASSWORD: at most 72 bytes"):
        config_for({}, {ADMIN_PASSWORD_ENV_VAR: "x" * 73})


def test_the_first_admin_password_comes_from_the_file_the_variable_or_is_generated(
    tmp_path: Path,
) -> None:
    from naraft.node import _admin_password

    file = tmp_path / "pw"
    file.write_text(" from-file \n")
    assert _admin_password(file, "from-env") == ("from-file", False)
    assert _admin_password(None, "from-env") == ("from-env", False)
    generated, was_generated = _admin_password(None, None)
    assert was_generated
    assert len(generated) >= 20
    file.write_text("x" * 73)
    with pytest.raises(ValueError, match="longer than 72 bytes"):
        _admin_password(file, None)
