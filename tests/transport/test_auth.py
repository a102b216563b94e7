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
from naraft.transport.auth import MIN_SECRET_BYTES


def secret_file(tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "cluster.secret"
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    assert load_secret(secret_file(tmp_path, b"  abc123abc123abc123\n"), {}) == (
        b"abc123abc123abc123"
    )


def test_secret_file_wins_over_the_environment(tmp_path: Path) -> None:
    env = {SECRET_ENV_VAR: "from-the-environment"}
    assert load_secret(secret_file(tmp_path, b"from-the-secret-file"), env) == (
        b"from-the-secret-file"
    )


def test_secret_comes_from_the_environment_stripped() -> None:
    assert load_secret(None, {SECRET_ENV_VAR: " from-the-environment\t"}) == (
        b"from-the-environment"
    )


def test_no_secret_configured_is_none() -> None:
    assert load_secret(None, {"OTHER": "x"}) is None


@pytest.mark.parametrize("content", [b"", b" \n\t"], ids=["empty", "whitespace"])
def test_empty_secret_file_is_an_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = secret_file(tmp_path, content)
    with pytest.raises(SecretError, match="is empty; it must be at least 16 bytes") as caught:
        load_secret(path, {})
    assert str(path) in caught.value.source
    assert "--cluster-secret-file" in str(caught.value)


def test_empty_secret_in_the_environment_is_an_error() -> None:
    with pytest.raises(SecretError, match=SECRET_ENV_VAR):
        load_secret(None, {SECRET_ENV_VAR: "  "})


def test_missing_secret_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="cannot read"):
        load_secret(tmp_path / "absent", {})


@pytest.mark.parametrize("length", [1, MIN_SECRET_BYTES - 1])
def test_a_short_secret_is_refused_naming_its_source_and_the_minimum(
    tmp_path: Path, length: int
) -> None:
    with pytest.raises(
        SecretError, match=f"is {length} bytes; it must be at least 16 bytes"
    ) as caught:
        load_secret(secret_file(tmp_path, b"x" * length), {})
    assert "--cluster-secret-file" in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(SecretError, match=SECRET_ENV_VAR):
        load_secret(None, {SECRET_ENV_VAR: "y" * length})


def test_a_secret_of_the_minimum_length_is_accepted(tmp_path: Path) -> None:
    assert load_secret(secret_file(tmp_path, b"z" * MIN_SECRET_BYTES), {}) == b"z" * 16


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o602, 0o610])
def test_a_secret_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, b"a-shared-cluster-secret", mode=mode)
    with pytest.raises(SecretError) as caught:
        load_secret(path, {})
    message = str(caught.value)
    assert str(path) in message
    assert f"mode {mode:04o}" in message
    assert "--allow-insecure-secret-file" in message
    assert "a-shared-cluster-secret" not in message  # never show the secret


def test_an_insecure_secret_file_is_accepted_with_a_warning_when_allowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = secret_file(tmp_path, b"a-shared-cluster-secret", mode=0o644)
    with caplog.at_level(logging.WARNING, logger="naraft.transport.auth"):
        assert load_secret(path, {}, allow_insecure_file=True) == b"a-shared-cluster-secret"
    assert "accessible to others" in caplog.text
    assert "a-shared-cluster-secret" not in caplog.text  # never log the secret


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
