"""Who may do what: Nacos's permission rule.

A request needs `(resource, action)`: the resource is `namespace:group:kind/name` (kind
`naming` or `config`), the action `r` or `w`. A user holds it when one of its roles is
`ROLE_ADMIN` (the global admin), or has a permission whose action contains the needed one
(`rw` holds `r` and `w`) and whose resource matches. A permission's resource is a namespace
(meaning everything in it, Nacos's console writes `ns:*:*`) or `namespace:group:resource`,
where `*` matches any run of characters and nothing else is special. The namespace `public`
and the empty namespace are the same one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from naraft.auth.state import Permission

PUBLIC = "public"


@dataclass(frozen=True, slots=True)
class Need:
    """What a request needs: `resource` (`ns:group:kind/name`, parts may be `*`) and `action`."""

    resource: str
    action: str


def resource_of(namespace: str | None, group: str | None, kind: str, name: str | None) -> str:
    """The resource a request touches; a part it does not name is `*`."""
    ns = namespace or PUBLIC
    return f"{ns}:{group or '*'}:{kind}/{name or '*'}"


def normalise(resource: str) -> str:
    """A permission's resource in the `ns:group:resource` form."""
    parts = resource.split(":")
    if len(parts) == 1:
        parts += ["*", "*"]
    elif len(parts) == 2:
        parts.append("*")
    if parts[0] == "":
        parts[0] = PUBLIC
    return ":".join(parts)


@functools.lru_cache(maxsize=4096)
def _glob(text: str) -> re.Pattern[str]:
    """`text` as a pattern where `*` matches any run of characters and nothing else is special."""
    return re.compile(".*".join(re.escape(part) for part in text.split("*")))


def _pattern(resource: str) -> re.Pattern[str]:
    return _glob(normalise(resource))


def allows(permissions: Iterable[Permission], need: Need) -> bool:
    for permission in permissions:
        if need.action in permission.action and _pattern(permission.resource).fullmatch(
            need.resource
        ):
            return True
    return False


def touches_namespace(permissions: Iterable[Permission], namespace: str) -> bool:
    """Whether any of `permissions` reaches into `namespace` (so its holder may see that
    the namespace exists)."""
    wanted = namespace or PUBLIC
    for permission in permissions:
        head = normalise(permission.resource).split(":", 1)[0]
        if _glob(head).fullmatch(wanted):
            return True
    return False
