"""Syntax colouring of a config's content for the console, done on the server.

Each type has a small tokenizer (regular expressions, no parsing), so content that is not
valid JSON, YAML or XML is still shown whole, coloured as far as its tokens go. Every piece
of the content is escaped before it is wrapped in a `<span class="hl-…">`; nothing of the
content can become markup. Content over `MAX_HIGHLIGHT_CHARS` is shown escaped, uncoloured,
so a 10 MiB config costs no more than printing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Final

from markupsafe import Markup

MAX_HIGHLIGHT_CHARS: Final = 128 * 1024

_JSON: Final = re.compile(
    r"""(?P<key>"(?:[^"\\\n]|\\.)*")(?=\s*:)
      |(?P<str>"(?:[^"\\\n]|\\.)*"?)
      |(?P<num>-?\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b)
      |(?P<lit>\b(?:true|false|null)\b)
      |(?P<punct>[{}\[\],:])""",
    re.VERBOSE,
)

_YAML_LINE: Final = re.compile(
    r"""^(?P<indent>\s*(?:-\s+)*)
        (?:(?P<key>[^\s#'"{}\[\],:-][^#:]*?|"[^"\n]*"|'[^'\n]*')(?P<colon>:)(?=\s|$))?
        (?P<rest>.*)$""",
    re.VERBOSE,
)
_YAML_VALUE: Final = re.compile(
    r"""(?P<com>(?:^|(?<=\s))\#.*$)
      |(?P<str>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\n]|'')*'?)
      |(?P<lit>(?<![\w.-])(?:true|false|null|yes|no|on|off|~)(?![\w.-]))
      |(?P<num>(?<![\w.-])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.-]))
      |(?P<punct>[{}\[\],]|^---$|^\.\.\.$|(?<![\w])[&*!][\w-]+)""",
    re.VERBOSE | re.IGNORECASE,
)

_PROPERTY: Final = re.compile(
    r"^(?P<key>\s*(?:[^=:\s\\]|\\.)+)(?P<sep>\s*[=:]\s*|\s+)?(?P<value>.*)$"
)

_MARKUP: Final = re.compile(
    r"""(?P<com><!--[\s\S]*?(?:-->|$))
      |(?P<cdata><!\[CDATA\[[\s\S]*?(?:\]\]>|$))
      |(?P<decl><[!?][^>]*>?)
      |(?P<tag></?[A-Za-z_][\w:.-]*)(?P<attrs>(?:\s+[^\s=>/]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>"']+))?)*)(?P<end>\s*/?>)?
      |(?P<entity>&(?:[A-Za-z]+|\#\d+|\#x[0-9A-Fa-f]+);)""",
    re.VERBOSE,
)
_ATTRIBUTE: Final = re.compile(
    r"""(?P<space>\s+)(?P<name>[^\s=>/]+)(?:(?P<eq>\s*=\s*)(?P<value>"[^"]*"|'[^']*'|[^\s>"']+))?"""
)


def escape(text: str) -> str:
    """`text` with the five HTML-special characters as entities (as jinja2's autoescape
    writes them); C-speed `str.replace`, since a config has tens of thousands of tokens."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


def _span(kind: str, text: str) -> str:
    return f'<span class="hl-{kind}">{escape(text)}</span>' if text else ""


def _tokens(pattern: re.Pattern[str], text: str) -> Iterator[tuple[str | None, str]]:
    """(kind, text) pieces of `text`: the named group that matched, or None between matches."""
    at = 0
    for found in pattern.finditer(text):
        if found.start() > at:
            yield None, text[at : found.start()]
        yield found.lastgroup, found.group()
        at = found.end()
    if at < len(text):
        yield None, text[at:]


def _join(pieces: Iterator[tuple[str | None, str]]) -> str:
    return "".join(escape(t) if kind is None else _span(kind, t) for kind, t in pieces)


def _json(content: str) -> str:
    return _join(_tokens(_JSON, content))


def _yaml(content: str) -> str:
    lines = []
    for line in content.split("\n"):
        found = _YAML_LINE.match(line)
        if found is None or line.lstrip().startswith("#"):
            lines.append(_span("com", line) if line.strip() else escape(line))
            continue
        lines.append(
            escape(found.group("indent"))
            + _span("key", found.group("key") or "")
            + _span("punct", found.group("colon") or "")
            + _join(_tokens(_YAML_VALUE, found.group("rest")))
        )
    return "\n".join(lines)


def _properties(content: str) -> str:
    lines = []
    for line in content.split("\n"):
        stripped = line.lstrip()
        found = _PROPERTY.match(line)
        if stripped.startswith(("#", "!")) or found is None:
            lines.append(_span("com", line) if stripped else escape(line))
            continue
        lines.append(
            _span("key", found.group("key"))
            + _span("punct", found.group("sep") or "")
            + _span("str", found.group("value"))
        )
    return "\n".join(lines)


def _markup(content: str) -> str:
    out = []
    at = 0
    for found in _MARKUP.finditer(content):
        out.append(escape(content[at : found.start()]))
        at = found.end()
        if found.group("tag") is None:
            kind = found.lastgroup or ""
            out.append(_span("com" if kind == "cdata" else kind, found.group()))
            continue
        out.append(_span("tag", found.group("tag")))
        for attribute in _ATTRIBUTE.finditer(found.group("attrs") or ""):
            out.append(escape(attribute.group("space")))
            out.append(_span("attr", attribute.group("name")))
            out.append(_span("punct", attribute.group("eq") or ""))
            out.append(_span("str", attribute.group("value") or ""))
        out.append(_span("tag", found.group("end") or ""))
    out.append(escape(content[at:]))
    return "".join(out)


_BY_TYPE: Final[dict[str, Callable[[str], str]]] = {
    "json": _json,
    "yaml": _yaml,
    "properties": _properties,
    "xml": _markup,
    "html": _markup,
}


def highlight(content: str, config_type: str | None) -> Markup:
    """`content` as escaped HTML, its tokens in `<span class="hl-KIND">` (KIND: key, str,
    num, lit, punct, com, tag, attr, decl, entity) for the types that have a tokenizer;
    any other type (text, unset, unknown) is escaped only."""
    colour = _BY_TYPE.get((config_type or "").strip().lower())
    if colour is None or len(content) > MAX_HIGHLIGHT_CHARS:
        return Markup(escape(content))  # (escaped here: the template does not again)
    return Markup(colour(content))  # every piece was escaped by the tokenizer
