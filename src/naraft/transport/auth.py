"""The cluster secret that authenticates peer RPC.

`sign` and `verify` are the bare HMAC-SHA256 (hex) under the secret, compared with
`hmac.compare_digest`; `naraft.transport.signing` builds what every peer request signs with
them (method, path, cluster id, sender, recipient, time, nonce and body) and the replay window.

The secret comes from `--cluster-secret-file FILE` or the environment variable
`NARAFT_CLUSTER_SECRET`, with surrounding whitespace stripped. It is never logged. It must
be at least `MIN_SECRET_BYTES` long, and a file that its group or others may access is
refused (unless `--allow-insecure-secret-file`): whoever reads it can forge peer messages.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Naraft-Signature"
SECRET_ENV_VAR: Final = "NARAFT_CLUSTER_SECRET"
SECRET_FILE_OPTION: Final = "--cluster-secret-file"
INSECURE_FILE_OPTION: Final = "--allow-insecure-secret-file"
GENERATED_SECRET_BYTES: Final = 32
MIN_SECRET_BYTES: Final = 16


class SecretError(ValueError):
    """The cluster secret at `source` is unusable; `rule` says why."""

    def __init__(self, source: str, rule: str) -> None:
        self.source = source
        self.rule = rule
        super().__init__(f"cluster secret from {source}: {rule}")


def sign(secret: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of `body` under `secret`: the value of `SIGNATURE_HEADER`."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str | None) -> bool:
    """Whether `signature` (the header's value, None when absent) signs `body`."""
    if signature is None:
        return False
    expected = sign(secret, body).encode("ascii")
    # compare_digest takes ASCII str only; bytes keep an odd header from raising.
    return hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace"))


def load_secret(
    file: Path | None, env: Mapping[str, str], *, allow_insecure_file: bool = False
) -> bytes | None:
    """The cluster secret from `file` if given, else from `env[NARAFT_CLUSTER_SECRET]`.

    Returns None when neither is given. Raises `SecretError` when the file cannot be read,
    when its group or others have any access to it (unless `allow_insecure_file`), or when
    the secret is shorter than `MIN_SECRET_BYTES` after stripping whitespace.
    """
    if file is not None:
        source = f"{SECRET_FILE_OPTION} {file}"
        try:
            raw = file.read_bytes()
            mode = file.stat().st_mode
        except OSError as error:
            raise SecretError(source, f"cannot read the file ({error.strerror})") from error
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            if not allow_insecure_file:
                raise SecretError(
                    source,
                    f"the file is accessible to its group or others (mode "
                    f"{stat.S_IMODE(mode):04o}); chmod 600 it, or pass {INSECURE_FILE_OPTION}",
                )
            logger.warning("cluster secret file is accessible to others path=%s", file)
        secret = raw.strip()
    elif SECRET_ENV_VAR in env:
        source = f"environment variable {SECRET_ENV_VAR}"
        secret = env[SECRET_ENV_VAR].strip().encode("utf-8")
    else:
        return None
    if len(secret) < MIN_SECRET_BYTES:
        size = f"is {len(secret)} bytes" if secret else "is empty"
        raise SecretError(
            source,
            f"{size}; it must be at least {MIN_SECRET_BYTES} bytes "
            "(every peer needs the same secret)",
        )
    return secret


def generate_secret() -> str:
    """A fresh random secret (URL-safe text), fit for a secret file or the environment."""
    return secrets.token_urlsafe(GENERATED_SECRET_BYTES)


def write_secret_file(path: Path, secret: str | None = None) -> bool:
    """Put `secret` (default: a fresh one) in `path`, unless a file is there (then False).
    The file is created 0600 in one step (O_EXCL), so the secret is never readable by
    others, not even for a moment. Used for the cluster secret and the first admin's
    generated password."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as file:
            file.write((secret if secret is not None else generate_secret()) + "\n")
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        path.unlink(missing_ok=True)  # never leave an empty secret behind
        raise
    return True
