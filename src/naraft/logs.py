"""The node's log setup: its level (any case), text or JSON lines, on stderr.

JSON lines carry `time` (ISO 8601, UTC), `level`, `logger`, `message`, the exception's text
when there is one, and the fields a record was given in `extra` (the access log's method,
path, status, seconds, remote), so that a log shipper needs no pattern to parse them.
"""

from __future__ import annotations

import datetime
import logging
import re
import sys
from collections.abc import Mapping
from typing import Final

import orjson

from naraft.config import LogFormat, LogSettings
from naraft.errors import InvalidArgumentError

ACCESS_LOGGER: Final = "naraft.access"  # one line per client request (naraft.api.observe)
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


# Nacos 1.x's naming log names (`PUT /nacos/v1/ns/operator/log`), as the loggers that do
# that job here. Nacos's `naming-distro` and `naming-performance` name mechanisms naraft
# does not have, so they are refused rather than silently ignored.
NACOS_LOG_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "naming-server": ("naraft.naming", "naraft.api"),
    "naming-raft": ("naraft.raft", "naraft.replica", "naraft.transport", "naraft.digest"),
    "naming-event": ("naraft.naming.feed", "naraft.configs.listeners"),
    "naming-push": ("naraft.naming.udp", "naraft.grpc"),
    "naming-rt": (ACCESS_LOGGER,),
    # Nacos's core log names (`PUT /nacos/v1/core/ops/log`); `core-distro` is refused too
    "core-auth": ("naraft.auth", "naraft.api.auth", "naraft.audit"),
    "core-raft": ("naraft.raft", "naraft.replica", "naraft.transport", "naraft.digest"),
    "core-cluster": ("naraft.api.members", "naraft.leader_watch", "naraft.election_audit"),
}
LOG_LEVELS: Final[Mapping[str, int]] = {  # logback's names (Nacos's) and Python's
    "ALL": 1,
    "TRACE": 5,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "OFF": logging.CRITICAL + 10,
}
MAX_LOGGER_NAME_CHARS: Final = 128
_OWN_LOGGER: Final = re.compile(r"naraft(\.[A-Za-z0-9_]+)*")


def set_log_level(log_name: str | None, log_level: str | None) -> tuple[str, ...]:
    """Set this node's level for `log_name` (a Nacos name or a `naraft…` logger) until it
    restarts; the loggers changed. A missing or unknown name or level is refused, naming
    the parameter, before anything changes."""
    name = (log_name or "").strip()
    level_name = (log_level or "").strip().upper()
    if not name:
        raise InvalidArgumentError("log_name", "is required")
    if not level_name:
        raise InvalidArgumentError("log_level", "is required")
    if name in NACOS_LOG_NAMES:
        loggers = NACOS_LOG_NAMES[name]
    elif len(name) <= MAX_LOGGER_NAME_CHARS and _OWN_LOGGER.fullmatch(name):
        loggers = (name,)
    else:
        known = ", ".join(NACOS_LOG_NAMES)
        raise InvalidArgumentError(
            "log_name", f"is one of {known}, or a logger whose name starts with naraft"
        )
    level = LOG_LEVELS.get(level_name[:16])
    if level is None:
        raise InvalidArgumentError("log_level", f"is one of {', '.join(LOG_LEVELS)}")
    for logger_name in loggers:
        logging.getLogger(logger_name).setLevel(level)
    return loggers
