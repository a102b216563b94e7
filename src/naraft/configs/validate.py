"""Nacos's rules for config request values, as pure functions raising InvalidArgumentError
naming the parameter (its wire name) before anything is proposed. The same checks bound
every value a config command carries when it is decoded at apply.

Nacos (`ParamUtils`): dataId, group, tenant and tag hold letters, digits and `_-.:` only;
the tenant at most 128 characters; config_tags at most 5 tags of 64 characters; desc 128;
type 32. Lengths Nacos leaves to its database columns are bounded here the same way:
dataId 255, group 128, appName 128.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

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
MAX_IDS: Final = 1000  # ids of one delete-by-ids
_EXTRA_CHARS: Final = frozenset("_-.:")

UNSUPPORTED_GRAY: Final = (
    "gray (beta) configs are not supported by naraft: publish without the betaIps header"
)
UNSUPPORTED_TAG: Final = "tag configs are not supported by naraft: publish without tag"

CONFIG_TYPES: Final = frozenset({"text", "json", "xml", "yaml", "html", "properties", "tomcat"})
"""Nacos's `ConfigType`s; any other type is stored as `text`, as Nacos does."""


def is_valid_name(value: str) -> bool:
    """Nacos's `ParamUtils.isValid`: letters, digits (Unicode, like Java's
    `Character.isLetterOrDigit`) and `_-.:`."""
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
