"""The console's session and CSRF rules (imported by `naraft.api.access`, so it imports
nothing of the API).

The session is the API's own token, kept in an HttpOnly cookie (`SESSION_COOKIE`) that the
access middleware takes on console routes only: the Nacos API never reads a cookie, so a
page elsewhere cannot spend it there. Since a cookie authenticates without the page's
consent, every console POST carries a CSRF token: with a session, an HMAC of the session's
token (a page that cannot read the cookie cannot compute it); with auth off (no session), a
random value in a second cookie that the form must repeat (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from aiohttp import web

CONSOLE_HOME: Final = "/nacos/"
CONSOLE_BASE: Final = "/nacos/ui"
LOGIN_PATH: Final = f"{CONSOLE_BASE}/login"
CONFIG_EXPORT_PATH: Final = f"{CONSOLE_BASE}/config/export"
CONFIG_IMPORT_PATH: Final = f"{CONSOLE_BASE}/config/import"
CONFIG_CLONE_PATH: Final = f"{CONSOLE_BASE}/config/clone"
NAMESPACE_WIDE_PATHS: Final = frozenset({CONFIG_EXPORT_PATH, CONFIG_IMPORT_PATH, CONFIG_CLONE_PATH})
"""Console routes that read or write any config of a namespace (the export and import
zips): their permission is checked on the namespace (`tenant`) alone, as the API's import."""
SESSION_COOKIE: Final = "naraft_session"
CSRF_COOKIE: Final = "naraft_csrf"
CSRF_FIELD: Final = "csrf"
COOKIE_PATH: Final = "/nacos"
_CSRF_LABEL: Final = b"naraft console csrf"


def is_console_path(path: str) -> bool:
    return path == CONSOLE_HOME or path.startswith(CONSOLE_BASE + "/")


def session_token(request: web.BaseRequest) -> str | None:
    """The session's token: on a console route only, and never for the API."""
    if not is_console_path(request.path):
        return None
    token = request.cookies.get(SESSION_COOKIE, "").strip()
    return token or None


def expected_csrf(request: web.BaseRequest) -> str | None:
    """The CSRF token this request's forms must carry (None: no session and no cookie yet)."""
    token = session_token(request)
    if token is not None:
        return hmac.new(token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()
    value = request.cookies.get(CSRF_COOKIE, "").strip()
    return value or None


def csrf_matches(request: web.BaseRequest, sent: str | None) -> bool:
    expected = expected_csrf(request)
    return expected is not None and sent is not None and hmac.compare_digest(expected, sent)


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(24)
