"""The cluster secret: where it comes from, and what a signature proves."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from naraft.transport import (
    SECRET_ENV_VAR,
    SecretError,
    generate_secret,
    load_secret,
    sign,
    verify,
)


def secret_file(tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "cluster.secret"
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    assert load_secret(secret_file(tmp_path, b"  abc123\n"), {}) == b"abc123"


def test_secret_file_wins_over_the_environment(tmp_path: Path) -> None:
    assert load_secret(secret_file(tmp_path, b"from-file"), {SECRET_ENV_VAR: "env"}) == (
        b"from-file"
    )


def test_secret_comes_from_the_environment_stripped() -> None:
    assert load_secret(None, {SECRET_ENV_VAR: " from-env\t"}) == b"from-env"


def test_no_secret_configured_is_none() -> None:
    assert load_secret(None, {"OTHER": "x"}) is None


@pytest.mark.parametrize("content", [b"", b" \n\t"], ids=["empty", "whitespace"])
def test_empty_secret_file_is_an_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = secret_file(tmp_path, content)
    with pytest.raises(SecretError, match="is empty") as caught:
        load_secret(path, {})
    assert str(path) in caught.value.source
    assert "--cluster-secret-file" in str(caught.value)


def test_empty_secret_in_the_environment_is_an_error() -> None:
    with pytest.raises(SecretError, match=SECRET_ENV_VAR):
        load_secret(None, {SECRET_ENV_VAR: "  "})


def test_missing_secret_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="cannot read"):
        load_secret(tmp_path / "absent", {})


def test_secret_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="naraft.transport.auth"):
        assert load_secret(secret_file(tmp_path, b"shared", mode=0o644), {}) == b"shared"
    assert "readable by others" in caplog.text
    assert "shared" not in caplog.text  # never log the secret


def test_generated_secrets_are_long_fresh_and_loadable() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second
    assert len(first) >= 40
    assert load_secret(None, {SECRET_ENV_VAR: first}) == first.encode()


def test_signature_verifies_only_the_same_body_under_the_same_secret() -> None:
    signature = sign(b"k", b"body")
    assert len(signature) == 64
    assert verify(b"k", b"body", signature)
    assert verify(b"k", b"body", signature.upper())
    assert not verify(b"k", b"body!", signature)
    assert not verify(b"other", b"body", signature)
    assert not verify(b"k", b"body", None)
    assert not verify(b"k", b"body", "")
    assert not verify(b"k", b"body", "é" * 64)
