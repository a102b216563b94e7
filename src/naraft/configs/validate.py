"""Nacos's rules for config request values, as pure functions raising InvalidArgumentError
naming the parameter (its wire name) before anything is proposed. The same checks bound
every value a config command carries when it is decoded at apply.

Nacos (`ParamUtils`): dataId, group, tenant and tag hold letters, digits and `_-.:` only;
the tenant at most 128 characters; config_tags at most 5 tags of 64 characters; desc 128;
type 32. Lengths Nacos leaves to its database columns are bounded here the same way:
dataId 255, group 128, appName 128.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import orjson

from naraft.configs.model import DEFAULT_GROUP, ConfigKey
from naraft.errors import InvalidArgumentError

MAX_DATA_ID_CHARS: Final = 255
MAX_GROUP_CHARS: Final = 128
MAX_TENANT_CHARS: Final = 128
MAX_APP_NAME_CHARS: Final = 128
MAX_DESC_CHARS: Final = 128
MAX_TYPE_CHARS: Final = 32
MAX_TAGS: Final = 5
MAX_TAG_CHARS: Final = 64
MAX_SRC_CHARS: Final = 256  # srcIp / srcUser recorded with a change
MAX_CAS_MD5_CHARS: Final = 32
MAX_IDS: Final = 1000  # ids of one delete-by-ids, and configs of one clone
MAX_CLONE_NAME_CHARS: Final = 1024
_EXTRA_CHARS: Final = frozenset("_-.:")

UNSUPPORTED_GRAY: Final = (
    "gray (beta) configs are not supported by naraft: publish without the betaIps header"
)
UNSUPPORTED_TAG: Final = "tag configs are not supported by naraft: publish without tag"

CONFIG_TYPES: Final = frozenset({"text", "json", "xml", "yaml", "html", "properties", "tomcat"})
"""Nacos's `ConfigType`s; any other type is stored as `text`, as Nacos does."""


_ASCII_NAME: Final = re.compile(r"[0-9A-Za-z_.:-]*")


def is_valid_name(value: str) -> bool:
    """Nacos's `ParamUtils.isValid`: letters, digits (Unicode, like Java's
    `Character.isLetterOrDigit`) and `_-.:`. An ASCII name (nearly all) is one pattern
    match; the character walk it replaces cost 0.1 µs a character on every publish,
    get and listener, and again where each node decodes a publish."""
    if value.isascii():
        return _ASCII_NAME.fullmatch(value) is not None
    return all(ch.isalnum() or ch in _EXTRA_CHARS for ch in value)


def _name(field: str, value: str | None, max_chars: int, *, label: str | None = None) -> str:
    if value is None:
        raise InvalidArgumentError(
            field, "is required", message=f"Required String parameter '{field}' is not present"
        )
    checked = value.strip() if field == "dataId" else value
    if not checked or not is_valid_name(checked) or len(value) > max_chars:
        raise InvalidArgumentError(
            field,
            f"must be 1..{max_chars} letters, digits or _-.:",
            message=f"invalid {label or field} : {value} (1..{max_chars} letters, digits or _-.:)",
        )
    return value


def tenant(value: str | None) -> str:
    """The namespace: blank is the public one (""); else Nacos's rule."""
    if value is None or not value.strip():
        return ""
    if not is_valid_name(value.strip()):
        raise InvalidArgumentError("tenant", "letters, digits or _-.:", message="invalid tenant")
    if len(value) > MAX_TENANT_CHARS:
        raise InvalidArgumentError(
            "tenant", f"at most {MAX_TENANT_CHARS} characters", message="too long tenant, over 128"
        )
    return value.strip()


def request_tenant(value: str | None) -> str:
    """A request's namespace: Nacos reads `public` (any case) as the default one, stored
    as "" (as blank is); else `tenant`'s rule."""
    if value is not None and value.strip().lower() == "public":
        return ""
    return tenant(value)


def config_key(data_id: str | None, group: str | None, tenant_value: str | None) -> ConfigKey:
    """The key a request names; 400 naming the first missing or invalid parameter."""
    checked_tenant = tenant(tenant_value)
    checked_id = _name("dataId", data_id, MAX_DATA_ID_CHARS)
    checked_group = _name("group", group, MAX_GROUP_CHARS)
    return ConfigKey(tenant=checked_tenant, group=checked_group, data_id=checked_id)


def group_or_default(group: str | None) -> str:
    return DEFAULT_GROUP if group is None or not group.strip() else group


def content(value: str | None, max_bytes: int) -> str:
    if value is None:
        raise InvalidArgumentError(
            "content", "is required", message="Required String parameter 'content' is not present"
        )
    if not value.strip():
        raise InvalidArgumentError("content", "must not be blank", message="content is blank")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ContentTooLargeError(size, max_bytes)
    return value


class ContentTooLargeError(InvalidArgumentError):
    """The content is over the configured limit (answered 413, naming the limit)."""

    def __init__(self, size: int, max_bytes: int) -> None:
        super().__init__(
            "content",
            f"at most {max_bytes} bytes",
            message=f"invalid content, over {max_bytes} bytes (it has {size}; the limit is "
            "the config-max-content-bytes setting)",
        )
        self.max_bytes = max_bytes


def optional_text(field: str, value: str | None, max_chars: int, message: str) -> str:
    if value is None:
        return ""
    if len(value) > max_chars:
        raise InvalidArgumentError(field, f"at most {max_chars} characters", message=message)
    return value


def config_tags(value: str | None) -> str:
    if value is None or not value:
        return ""
    tags = value.split(",")
    if len(tags) > MAX_TAGS:
        raise InvalidArgumentError(
            "configTags", "at most 5", message="too much config_tags, over 5"
        )
    if any(len(tag) > MAX_TAG_CHARS for tag in tags):
        raise InvalidArgumentError("configTags", "at most 64 each", message="too long tag, over 64")
    return value


def config_type(value: str | None) -> str:
    """A known type, or `text` (Nacos stores an unknown type as the default)."""
    if value is None:
        return "text"
    optional_text("type", value, MAX_TYPE_CHARS, "too long type, over 32")
    return value if value in CONFIG_TYPES else "text"


def cas_md5(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > MAX_CAS_MD5_CHARS:
        raise InvalidArgumentError("casMd5", "an MD5 hex string", message="invalid casMd5")
    return value.strip()


def page(field: str, value: str | None, default: int | None, high: int) -> int:
    if value is None or not value.strip():
        if default is None:
            raise InvalidArgumentError(
                field, "is required", message=f"Required int parameter '{field}' is not present"
            )
        return default
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise InvalidArgumentError(field, "an integer", message=f"invalid {field} : {value}")
    return max(1, min(int(text), high))


def ids(value: str | None) -> tuple[int, ...]:
    if value is None or not value.strip():
        raise InvalidArgumentError(
            "ids", "is required", message="Required List parameter 'ids' is not present"
        )
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if len(parts) > MAX_IDS:
        raise InvalidArgumentError(
            "ids", f"at most {MAX_IDS}", message=f"too many ids, over {MAX_IDS}"
        )
    result: list[int] = []
    for part in parts:
        if not part.isascii() or not part.isdigit() or len(part) > 18:
            raise InvalidArgumentError(
                "ids", "comma-separated integers", message=f"invalid ids : {value}"
            )
        result.append(int(part))
    return tuple(dict.fromkeys(result))


def long_id(field: str, value: str | None) -> int:
    if value is None or not value.strip():
        raise InvalidArgumentError(
            field, "is required", message=f"Required Long parameter '{field}' is not present"
        )
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidArgumentError(field, "an integer", message=f"invalid {field} : {value}")
    return int(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class RawPublish:
    """A publish request's parameters as sent (wire names mapped by the API)."""

    data_id: str | None
    group: str | None
    tenant: str | None
    content: str | None
    app_name: str | None = None
    type: str | None = None
    desc: str | None = None
    config_tags: str | None = None
    cas_md5: str | None = None


@dataclass(frozen=True, slots=True)
class CloneSource:
    """One config a clone copies: its id, and the name it takes in the target namespace
    (None: its own)."""

    id: int
    data_id: str | None = None
    group: str | None = None


def clone_sources(body: bytes) -> tuple[CloneSource, ...]:
    """A clone request's body, Nacos's `[{"cfgId": 1, "dataId": "...", "group": "..."}]`:
    at most `MAX_IDS` items; `cfgId` an integer (or a string of digits, as Jackson takes
    it), `dataId` and `group` strings, null or absent (the source's own; a blank one too);
    null items skipped and a repeated id taken once, the first time, as Nacos does. The
    names are checked later, as a publish's are."""
    try:
        items = orjson.loads(body) if body.strip() else []
    except orjson.JSONDecodeError:
        raise InvalidArgumentError(
            "body", "a JSON list", message="the clone body is not JSON: a list of {cfgId, ...}"
        ) from None
    if not isinstance(items, list):
        raise InvalidArgumentError(
            "body", "a JSON list", message="the clone body must be a JSON list of {cfgId, ...}"
        )
    return clone_items(items)


def clone_items(items: list[object]) -> tuple[CloneSource, ...]:
    """`clone_sources` on a parsed list (the console's form builds one)."""
    if len(items) > MAX_IDS:
        raise InvalidArgumentError(
            "body",
            f"at most {MAX_IDS} items",
            message=f"the clone body lists over {MAX_IDS} configs",
        )
    sources: dict[int, CloneSource] = {}
    for item in items:
        if item is None:
            continue
        if not isinstance(item, dict):
            raise InvalidArgumentError(
                "body", "objects", message="each item of the clone body must be an object"
            )
        config_id = _clone_id(item.get("cfgId"))
        if config_id not in sources:
            sources[config_id] = CloneSource(
                config_id, _clone_name(item, "dataId"), _clone_name(item, "group")
            )
    return tuple(sources.values())


def _clone_id(value: object) -> int:
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        value = int(value.strip()) if len(value.strip()) <= 18 else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise InvalidArgumentError(
            "cfgId", "an id", message=f"cfgId must be a config id, not {str(value)[:40]!r}"
        )
    return value


def _clone_name(item: dict[str, object], field: str) -> str | None:
    value = item.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError(field, "a string", message=f"{field} must be a string")
    if len(value) > MAX_CLONE_NAME_CHARS:  # a publish refuses it anyway: not worth holding
        raise InvalidArgumentError(
            field, f"at most {MAX_CLONE_NAME_CHARS} characters", message=f"too long {field}"
        )
    return value if value.strip() else None
