"""Access tokens: JWT (HS256) under the cluster's replicated signing key, as Nacos's
`JwtTokenManager` issues them (`sub` is the username, `exp` the expiry in Unix seconds).

PyJWT is imported at the first token, not with this module: it loads `cryptography` for
its RSA and EC algorithms (with `naraft.certs`, about 9 MiB of a node's memory), which a
node without auth never needs.

The key is generated per cluster at bootstrap; there is no default. A token signed with
any other key (Nacos's well-known default among them) does not verify. The caller passes
the time, so this module reads no clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

ALGORITHM: Final = "HS256"
MAX_TOKEN_CHARS: Final = 4096


class TokenProblem(enum.Enum):
    """Why a token is refused, with Nacos's message for it."""

    MISSING = "user not found!"
    EXPIRED = "token expired!"
    INVALID = "token invalid!"


class TokenError(Exception):
    def __init__(self, problem: TokenProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Claims:
    username: str
    expires_at: int  # Unix seconds


def issue(key: bytes, username: str, *, now: float, ttl_seconds: int) -> str:
    import jwt

    return jwt.encode({"sub": username, "exp": int(now) + ttl_seconds}, key, algorithm=ALGORITHM)


def verify(key: bytes, token: str, *, now: float) -> Claims:
    """The claims of `token` if `key` signed it and it has not expired; else TokenError."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError(TokenProblem.INVALID)
    import jwt

    try:
        data = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"], "verify_exp": False},
        )
    except jwt.PyJWTError:
        raise TokenError(TokenProblem.INVALID) from None
    subject, expiry = data.get("sub"), data.get("exp")
    if not isinstance(subject, str) or type(expiry) is not int:
        raise TokenError(TokenProblem.INVALID)
    if expiry <= now:
        raise TokenError(TokenProblem.EXPIRED)
    return Claims(username=subject, expires_at=expiry)
