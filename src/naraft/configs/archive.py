"""The zip the Nacos console exports and imports configs with: read (bounded, strict) and
written, in both of Nacos's formats (docs/nacos-compat.md#config).

An entry `group/dataId` holds a config's content (UTF-8). Beside them, one metadata entry:

- format 1 (`export=true`): `.meta.yml`, optional, one line `group.dataId.app=appName` per
  config that has an app name, where the dataId's last `.` is written `~`
  (`DEFAULT_GROUP.app~yaml.app=shop`), lines ended by CRLF;
- format 2 (`exportV2=true`): `.metadata.yml`, a YAML document `metadata:` holding a list of
  maps with `dataId`, `group`, `type` (required) and `appName`, `desc` (optional). Nacos writes
  it with SnakeYAML; `parse_metadata_v2` reads the block-style subset that writes, and no more
  (no anchors, aliases, tags or flow collections), so a stranger's file cannot make it work
  hard. PyYAML is not a dependency of the server, and YAML's full language is not needed.

A zip comes from whoever uploads it: `read_archive` counts entries before reading any,
counts the bytes it actually inflates (never trusting the sizes the zip declares), and
stops at the first limit crossed. Every refusal is an `ArchiveError` carrying Nacos's
result code and a message naming the entry and the rule.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Final

META_V1: Final = ".meta.yml"
META_V2: Final = ".metadata.yml"
MAX_ENTRIES: Final = 10_000  # configs in one zip (Nacos's console pages by 10..100)
MAX_TOTAL_BYTES: Final = 32 << 20
"""Uncompressed bytes of one zip, all entries together (at least one largest config more)."""
MAX_RATIO: Final = 200
"""An entry inflating to more than this many times its compressed size (and over
`RATIO_FLOOR_BYTES`, or a quarter of the content limit if less) is refused as a zip bomb:
text configs compress 3..20 times."""
RATIO_FLOOR_BYTES: Final = 1 << 20
MAX_ENTRY_NAME_CHARS: Final = 512
_CHUNK: Final = 64 * 1024

# Nacos's ResultCodeEnum (config import codes)
NAMESPACE_NOT_EXIST: Final = 100001
METADATA_ILLEGAL: Final = 100002
DATA_VALIDATION_FAILED: Final = 100003
PARSING_DATA_FAILED: Final = 100004
DATA_EMPTY: Final = 100005
NO_SELECTED_CONFIG: Final = 100006  # a clone of nothing


class ArchiveError(ValueError):
    """A zip refused: `code` is Nacos's result code, the message names the problem."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_entry_bytes: int  # a config's content limit
    max_entries: int = MAX_ENTRIES
    max_total_bytes: int = MAX_TOTAL_BYTES

    @classmethod
    def for_content(cls, max_content_bytes: int) -> ArchiveLimits:
        return cls(
            max_entry_bytes=max_content_bytes,
            max_total_bytes=max(MAX_TOTAL_BYTES, max_content_bytes + (1 << 20)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveItem:
    """One config the zip holds (names not yet validated: the service does that)."""

    group: str
    data_id: str
    content: str
    app_name: str | None = None
    type: str | None = None
    desc: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportItem:
    group: str
    data_id: str
    content: str
    app_name: str = ""
    type: str = "text"
    desc: str = ""


# ---------------------------------------------------------------------------- reading


def _inflate(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits, used: int
) -> bytes:
    name = info.filename
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # Java's ZipOutputStream (Nacos) writes only these; bzip2 and LZMA inflate a whole
        # compressed block at once, past any chunked count
        raise ArchiveError(
            PARSING_DATA_FAILED,
            f"entry {name!r} uses compression method {info.compress_type}; "
            "only stored and deflated entries are taken",
        )
    if info.file_size > limits.max_entry_bytes:
        raise ArchiveError(
            PARSING_DATA_FAILED,
            f"entry {name!r} is {info.file_size} bytes; a config is at most "
            f"{limits.max_entry_bytes} (config-max-content-bytes)",
        )
    out = bytearray()
    with archive.open(info) as stream:
        while chunk := stream.read(_CHUNK):
            out += chunk
            if len(out) > limits.max_entry_bytes:
                raise ArchiveError(
                    PARSING_DATA_FAILED,
                    f"entry {name!r} inflates past {limits.max_entry_bytes} bytes "
                    "(config-max-content-bytes)",
                )
            if used + len(out) > limits.max_total_bytes:
                raise ArchiveError(
                    PARSING_DATA_FAILED,
                    f"the zip inflates past {limits.max_total_bytes} bytes in all",
                )
            floor = min(RATIO_FLOOR_BYTES, limits.max_entry_bytes // 4)
            if len(out) > floor and len(out) > MAX_RATIO * max(1, info.compress_size):
                raise ArchiveError(
                    PARSING_DATA_FAILED,
                    f"entry {name!r} inflates more than {MAX_RATIO} times its compressed "
                    "size: refused as a zip bomb",
                )
    return bytes(out)


def _entries(data: bytes, limits: ArchiveLimits) -> list[tuple[str, bytes]]:
    """Every file entry's name and inflated bytes. zipfile parses a stranger's bytes: any
    exception it raises (BadZipFile, zlib, struct, index and Unicode errors all happen on
    damaged input) is this zip's fault and becomes an ArchiveError."""
    try:
        return _read_entries(data, limits)
    except ArchiveError:
        raise
    except Exception as error:
        raise ArchiveError(
            PARSING_DATA_FAILED,
            f"the file is not a readable zip: {type(error).__name__}: {str(error)[:200]}",
        ) from None


def _read_entries(data: bytes, limits: ArchiveLimits) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries + 1:  # + the metadata entry
            raise ArchiveError(
                PARSING_DATA_FAILED,
                f"the zip has {len(infos)} entries; at most {limits.max_entries} configs are taken",
            )
        entries: list[tuple[str, bytes]] = []
        seen: set[str] = set()
        used = 0
        for info in infos:
            name = info.filename
            if not name:
                raise ArchiveError(PARSING_DATA_FAILED, "an entry has no name")
            if name.endswith("/"):
                continue  # as Nacos: folders carry nothing
            if name in seen:
                raise ArchiveError(PARSING_DATA_FAILED, f"entry {name[:80]!r} is in the zip twice")
            seen.add(name)
            if len(name) > MAX_ENTRY_NAME_CHARS:
                raise ArchiveError(
                    PARSING_DATA_FAILED,
                    f"entry name {name[:80]!r}... is over {MAX_ENTRY_NAME_CHARS} characters",
                )
            body = _inflate(archive, info, limits, used)
            used += len(body)
            entries.append((name, body))
    return entries


def _text(name: str, body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ArchiveError(
            PARSING_DATA_FAILED, f"entry {name[:80]!r} is not UTF-8 text (byte {error.start})"
        ) from None


def _split_name(name: str) -> tuple[str, str]:
    parts = name.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ArchiveError(
            PARSING_DATA_FAILED,
            f"entry {name[:80]!r} is not named group/dataId (nor {META_V1} or {META_V2})",
        )
    return parts[0], parts[1]


def v1_meta_key(group: str, data_id: str) -> str:
    """The `.meta.yml` key of a config's app name (Nacos: the dataId's last `.` as `~`)."""
    head, dot, tail = data_id.rpartition(".")
    return f"{group}.{head}~{tail}.app" if dot else f"{group}.{data_id}.app"


def parse_metadata_v1(text: str) -> dict[str, str]:
    """`.meta.yml`: `key=appName` lines (CR, LF or both between them)."""
    result: dict[str, str] = {}
    for number, line in enumerate(text.replace("\r", "\n").split("\n"), start=1):
        if not line:
            continue
        parts = line.split("=")
        if len(parts) != 2:
            raise ArchiveError(
                METADATA_ILLEGAL,
                f"{META_V1} line {number} is not key=appName: {line[:80]!r}",
            )
        result[parts[0]] = parts[1]
    return result


_TYPE_OF_EXTENSION: Final = {
    "yaml": "yaml",
    "yml": "yaml",
    "properties": "properties",
    "json": "json",
    "xml": "xml",
    "html": "html",
    "htm": "html",
    "txt": "text",
    "text": "text",
}


def type_of_name(data_id: str) -> str:
    """The type Nacos gives an imported config whose zip names none (format 1): from the
    dataId's extension (its `FileTypeEnum`), else text."""
    _head, dot, extension = data_id.rpartition(".")
    return _TYPE_OF_EXTENSION.get(extension.lower(), "text") if dot else "text"


def read_archive(data: bytes, limits: ArchiveLimits) -> list[ArchiveItem]:
    """The configs a Nacos export zip holds, in its order; ArchiveError for any problem."""
    entries = _entries(data, limits)
    meta_v1 = meta_v2 = None
    configs: dict[tuple[str, str], str] = {}
    for name, body in entries:
        if name == META_V1:
            meta_v1 = _text(name, body)
        elif name == META_V2:
            meta_v2 = _text(name, body)
        else:
            configs[_split_name(name)] = _text(name, body)
    if len(configs) > limits.max_entries:
        raise ArchiveError(
            PARSING_DATA_FAILED,
            f"the zip holds {len(configs)} configs; at most {limits.max_entries}",
        )
    if meta_v2 is not None:
        return _with_v2(configs, parse_metadata_v2(meta_v2, limits.max_entries))
    apps = parse_metadata_v1(meta_v1) if meta_v1 is not None else {}
    return [
        ArchiveItem(
            group=group,
            data_id=data_id,
            content=content,
            app_name=apps.get(v1_meta_key(group, data_id)),
            type=type_of_name(data_id),
        )
        for (group, data_id), content in configs.items()
    ]


def _with_v2(
    configs: dict[tuple[str, str], str], metadata: list[dict[str, str]]
) -> list[ArchiveItem]:
    items: list[ArchiveItem] = []
    listed: set[tuple[str, str]] = set()
    for number, entry in enumerate(metadata, start=1):
        missing = [k for k in ("dataId", "group", "type") if not entry.get(k, "").strip()]
        if missing:
            raise ArchiveError(
                METADATA_ILLEGAL, f"{META_V2} item {number} has no {', '.join(missing)}"
            )
        key = (entry["group"], entry["dataId"])
        if key in listed:
            raise ArchiveError(METADATA_ILLEGAL, f"{META_V2} lists {key[0]}/{key[1]} twice")
        listed.add(key)
        content = configs.get(key)
        if content is None:
            raise ArchiveError(
                METADATA_ILLEGAL, f"{META_V2} lists {key[0]}/{key[1]}, which the zip does not hold"
            )
        items.append(
            ArchiveItem(
                group=key[0],
                data_id=key[1],
                content=content,
                type=entry["type"],
                app_name=entry.get("appName"),
                desc=entry.get("desc"),
            )
        )
    unlisted = [f"{g}/{d}" for g, d in configs if (g, d) not in listed]
    if unlisted:
        raise ArchiveError(
            METADATA_ILLEGAL,
            f"{META_V2} does not list {unlisted[0]} (and {len(unlisted) - 1} more)"
            if len(unlisted) > 1
            else f"{META_V2} does not list {unlisted[0]}",
        )
    return items


# ------------------------------------------------------------- the .metadata.yml subset

_V2_KEYS: Final = frozenset({"dataId", "group", "type", "appName", "desc"})
_ESCAPES: Final = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\v",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}
_HEX_ESCAPES: Final = {"x": 2, "u": 4, "U": 8}


def _bad(number: int, why: str) -> ArchiveError:
    return ArchiveError(METADATA_ILLEGAL, f"{META_V2} line {number}: {why}")


def _double_quoted(text: str, number: int) -> str:
    out: list[str] = []
    at = 0
    while at < len(text):
        ch = text[at]
        if ch != "\\":
            out.append(ch)
            at += 1
            continue
        code = text[at + 1 : at + 2]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            at += 2
        elif code in _HEX_ESCAPES:
            digits = text[at + 2 : at + 2 + _HEX_ESCAPES[code]]
            if len(digits) != _HEX_ESCAPES[code] or not all(
                c in "0123456789abcdefABCDEF" for c in digits
            ):
                raise _bad(number, f"bad escape \\{code}{digits}")
            value = int(digits, 16)
            if value > 0x10FFFF:
                raise _bad(number, f"bad escape \\{code}{digits}")
            out.append(chr(value))
            at += 2 + len(digits)
        else:
            raise _bad(number, f"unknown escape \\{code}")
    return "".join(out)


def _scalar(raw: str, number: int) -> str | None:
    """A flow scalar: plain, 'single' or "double" quoted (folded lines already joined)."""
    text = raw.strip()
    if not text:
        return None
    if text[0] in "'\"":
        end = _quote_end(text)
        if end is None:
            raise _bad(number, "unterminated quoted value")
        if end != len(text) - 1:
            raise _bad(number, f"text after the closing quote: {text[end + 1 :][:40]!r}")
        body = text[1:-1]
        return body.replace("''", "'") if text[0] == "'" else _double_quoted(body, number)
    if text[0] in "&*!|>[]{}%@`":
        raise _bad(
            number, f"{text[0]!r} values (anchors, aliases, tags, blocks, flows) are not taken"
        )
    if " #" in text:
        text = text.split(" #", 1)[0].rstrip()
    if text in ("~", "null", "Null", "NULL"):
        return None
    return text


def _split_pair(body: str, number: int) -> tuple[str, str]:
    key, colon, value = body.partition(":")
    if not colon or (value and not value.startswith(" ")):
        raise _bad(number, f"expected key: value, got {body[:60]!r}")
    key = key.strip()
    if key not in _V2_KEYS:
        raise _bad(number, f"unknown key {key[:40]!r} (taken: {', '.join(sorted(_V2_KEYS))})")
    return key, value


def parse_metadata_v2(text: str, max_items: int) -> list[dict[str, str]]:
    """`.metadata.yml` as Nacos writes it: `metadata:` then a block list of block maps whose
    values are scalars (a long one may continue on more-indented lines, folded with one
    space). Anything else is ArchiveError(METADATA_ILLEGAL) naming the line."""
    lines = text.replace("\r\n", "\n").split("\n")
    items: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    pending: tuple[str, list[str], int] | None = None  # key, pieces, first line number
    item_indent: int | None = None
    seen_root = False

    def flush() -> None:
        nonlocal pending
        if pending is not None and current is not None:
            key, pieces, first = pending
            value = _scalar(" ".join(pieces), first)
            if value is not None:
                current[key] = value
        pending = None

    for number, line in enumerate(lines, start=1):
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise _bad(number, "tabs are not indentation")
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or (stripped == "---" and not seen_root):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if not seen_root:
            if indent != 0 or stripped.split("#")[0].strip() not in ("metadata:", "metadata: []"):
                raise _bad(number, "expected the top-level key metadata:")
            seen_root = True
            if stripped.startswith("metadata: []"):
                item_indent = -1
            continue
        if item_indent == -1:
            raise _bad(number, "content after metadata: []")
        body_indent = (item_indent or 0) + 2
        if stripped.startswith("- ") or stripped == "-":
            if item_indent is None:
                item_indent = indent
            if indent != item_indent:
                raise _bad(number, "list item at an unexpected indentation")
            flush()
            if len(items) >= max_items:
                raise _bad(number, f"more than {max_items} items")
            current = {}
            items.append(current)
            rest = stripped[1:].strip()
            if rest:
                key, value = _split_pair(rest, number)
                pending = (key, [value], number)
            continue
        if current is None:
            raise _bad(number, "expected a list item (- dataId: ...)")
        if indent == body_indent and not (pending is not None and _open_quote(pending[1])):
            flush()
            key, value = _split_pair(stripped, number)
            if key in current:
                raise _bad(number, f"key {key} given twice in one item")
            pending = (key, [value], number)
        elif pending is not None and (indent > body_indent or _open_quote(pending[1])):
            pending[1].append(stripped)
        else:
            raise _bad(number, "unexpected indentation")
    if pending is not None and _open_quote(pending[1]):
        raise _bad(pending[2], "unterminated quoted value")
    flush()
    if not seen_root:
        raise ArchiveError(METADATA_ILLEGAL, f"{META_V2} has no metadata: list")
    if not items:
        raise ArchiveError(METADATA_ILLEGAL, f"{META_V2} lists no configs")
    return items


def _quote_end(text: str) -> int | None:
    """Where the quote `text` opens closes (its index), or None when it does not."""
    quote = text[0]
    at = 1
    while at < len(text):
        ch = text[at]
        if quote == '"' and ch == "\\":
            at += 2
            continue
        if ch == quote:
            if quote == "'" and text[at + 1 : at + 2] == "'":
                at += 2
                continue
            return at
        at += 1
    return None


def _open_quote(pieces: list[str]) -> bool:
    """Whether a value's text so far opens a quote it has not closed."""
    text = " ".join(pieces).strip()
    return bool(text) and text[0] in "'\"" and _quote_end(text) is None


# ---------------------------------------------------------------------------- writing


def _yaml_string(value: str) -> str:
    """A YAML double-quoted scalar (every character YAML 1.1 and 1.2 read back the same)."""
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif (
            ord(ch) < 0x20
            or ord(ch) == 0x7F
            or 0x80 <= ord(ch) <= 0x9F
            or ch in "\u2028\u2029\ufeff"
        ) or 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def metadata_v2_text(items: list[ExportItem]) -> str:
    """`.metadata.yml` for `items`, keys in SnakeYAML's (alphabetical) order, blank optional
    values left out as Nacos leaves out nulls."""
    lines = ["metadata:"]
    for item in items:
        fields = [
            ("appName", item.app_name),
            ("dataId", item.data_id),
            ("desc", item.desc),
            ("group", item.group),
            ("type", item.type or "text"),
        ]
        present = [(k, v) for k, v in fields if v or k in ("dataId", "group", "type")]
        for position, (key, value) in enumerate(present):
            lines.append(f"{'- ' if position == 0 else '  '}{key}: {_yaml_string(value)}")
    return "\n".join(lines) + "\n"


def metadata_v1_text(items: list[ExportItem]) -> str | None:
    """`.meta.yml` for the items with an app name (None when none has one)."""
    lines = [f"{v1_meta_key(i.group, i.data_id)}={i.app_name}\r\n" for i in items if i.app_name]
    return "".join(lines) if lines else None


def write_archive(items: list[ExportItem], *, v2: bool) -> bytes:
    """The export zip of `items`: one entry `group/dataId` each, then the metadata entry."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for item in items:
            archive.writestr(
                f"{item.group}/{item.data_id}", item.content.encode("utf-8", "surrogatepass")
            )
        meta = metadata_v2_text(items) if v2 else metadata_v1_text(items)
        if meta is not None:
            archive.writestr(META_V2 if v2 else META_V1, meta.encode("utf-8"))
    return buffer.getvalue()
