"""The node's log setup: its level (any case), text or JSON lines, on stderr.

JSON lines carry `time` (ISO 8601, UTC), `level`, `logger`, `message`, the exception's text
when there is one, and the fields a record was given in `extra` (the access log's method,
path, status, seconds, remote), so that a log shipper needs no pattern to parse them.
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Final

import orjson

from naraft.config import LogFormat, LogSettings

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup_logging(settings: LogSettings) -> None:
    """Configure the root logger once, for `naraft server`."""
    handler = logging.StreamHandler(sys.stderr)
    if LogFormat(settings.format) is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
