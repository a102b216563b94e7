"""Long polling: the listener protocol's codec and `ListenerHub`, the polls one node holds.

The wire format (Nacos 1.x `Listening-Configs`): for each watched config
`dataId ^B group ^B md5 ^A`, or with a namespace `dataId ^B group ^B md5 ^B tenant ^A`
(^B = \\u0002, ^A = \\u0001). The answer lists the configs whose MD5 differs,
`dataId ^B group [^B tenant] ^A` each, URL-encoded as Java's `URLEncoder` does.

Each node holds its own polls in memory. The replica's applied-changes event (fired on
every node, for entries and for installed snapshots alike) wakes every poll watching a
changed config, in the same event-loop turn; the poll answers once the MD5 a client sent
differs from the applied one. A client that leaves is forgotten at once (`release`).
Bounds: at most `max_polls` held at once and `max_keys` per poll; the hold is clamped to
`[min_hold, max_hold]`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote_plus, unquote_plus

from naraft.configs import validate
from naraft.configs.model import LINE_SEPARATOR, WORD_SEPARATOR, ConfigKey
from naraft.configs.state import ConfigState, changed_configs
from naraft.errors import InvalidArgumentError, UnavailableError

logger = logging.getLogger(__name__)

MIN_HOLD_SECONDS: Final = 10.0  # Nacos holds a poll at least 10 s
MAX_HOLD_SECONDS: Final = 300.0
ANSWER_EARLY_SECONDS: Final = 0.5  # Nacos answers 500 ms before the client's timeout


class TooManyPollsError(UnavailableError):
    """This node holds as many polls as it may; the client should try again later."""


def parse_listening(text: str | None, max_keys: int) -> dict[ConfigKey, str]:
    """`Listening-Configs` → {config: the client's MD5}. InvalidArgumentError naming the
    parameter for a malformed or oversized one."""
    if text is None or not text.strip():
        raise InvalidArgumentError(
            "Listening-Configs", "is required", message="invalid probeModify"
        )
    text = unquote_plus(text)  # Nacos decodes the parameter once more
    found: dict[ConfigKey, str] = {}
    for line in text.split(LINE_SEPARATOR):
        if not line:
            continue
        fields = line.split(WORD_SEPARATOR)
        if len(fields) not in (3, 4):
            raise InvalidArgumentError(
                "Listening-Configs", "dataId^Bgroup^Bmd5[^Btenant]^A", message="invalid probeModify"
            )
        data_id, group, md5 = fields[0], fields[1], fields[2]
        tenant = fields[3] if len(fields) == 4 else ""
        try:
            key = validate.config_key(data_id, group, tenant)
        except InvalidArgumentError as error:
            raise InvalidArgumentError(
                "Listening-Configs", str(error), message=f"invalid probeModify: {error}"
            ) from None
        if len(md5) > validate.MAX_CAS_MD5_CHARS:
            raise InvalidArgumentError("Listening-Configs", "md5", message="invalid probeModify")
        found[key] = md5
        if len(found) > max_keys:
            raise InvalidArgumentError(
                "Listening-Configs",
                f"at most {max_keys} configs",
                message=f"invalid probeModify: more than {max_keys} configs in one poll "
                "(config-max-poll-keys)",
            )
    return found


def encode_changed(keys: Iterable[ConfigKey]) -> str:
    """The answer listing changed configs, URL-encoded like Java's URLEncoder."""
    lines = []
    for key in keys:
        line = key.data_id + WORD_SEPARATOR + key.group
        if key.tenant:
            line += WORD_SEPARATOR + key.tenant
        lines.append(line + LINE_SEPARATOR)
    return quote_plus("".join(lines), safe="*")


def group_key(key: ConfigKey) -> str:
    """Nacos's `GroupKey2`: dataId+group[+tenant] (a `+` or `%` inside is escaped)."""
    parts = [key.data_id, key.group] + ([key.tenant] if key.tenant else [])
    return "+".join(p.replace("%", "%25").replace("+", "%2B") for p in parts)


Deliver = Callable[[list[ConfigKey]], None]
"""Where a held poll's answer goes: the changed configs, or [] when the hold ends."""


@dataclass(slots=True, eq=False)
class HeldPoll:
    """One poll the hub holds; `ListenerHub.release` drops it unanswered."""

    md5s: Mapping[ConfigKey, str]
    client: str
    deliver: Deliver
    timer: asyncio.TimerHandle | None = field(default=None)


class ListenerHub:
    """The long polls this node holds, woken by applied changes. A poll is a record and a
    callback (`hold`), not a waiting task: a node holds thousands, and the connection of
    each can be handed out of the HTTP server while it waits (`naraft.api.edge`)."""

    def __init__(
        self,
        state: ConfigState,
        *,
        max_polls: int,
        max_keys: int,
        min_hold_seconds: float = MIN_HOLD_SECONDS,
        max_hold_seconds: float = MAX_HOLD_SECONDS,
        on_notify: Callable[[float], None] | None = None,
    ) -> None:
        self._state = state
        self._by_key: dict[ConfigKey, set[HeldPoll]] = {}
        self._held = 0
        self.max_polls = max_polls
        self.max_keys = max_keys
        self._min_hold = min_hold_seconds
        self._max_hold = max_hold_seconds
        self._on_notify = on_notify

    @property
    def held(self) -> int:
        """Polls held right now."""
        return self._held

    def changed(self, md5s: Mapping[ConfigKey, str]) -> list[ConfigKey]:
        """The configs whose applied MD5 ("" when absent) differs from the client's."""
        state = self._state
        return [key for key, md5 in md5s.items() if state.md5_of(key) != md5]

    def hold_seconds(self, timeout_ms: int) -> float:
        return min(self._max_hold, max(self._min_hold, timeout_ms / 1000 - ANSWER_EARLY_SECONDS))

    def listeners_of(self, key: ConfigKey) -> dict[str, str]:
        """Client address → the MD5 it holds, for the held polls watching `key`."""
        return {poll.client: poll.md5s[key] for poll in self._by_key.get(key, ())}

    def listened_by(self, client: str) -> dict[str, str]:
        """Nacos group key → MD5 of what the client at `client` watches in held polls."""
        found: dict[str, str] = {}
        for key, polls in self._by_key.items():
            for poll in polls:
                if poll.client == client:
                    found[group_key(key)] = poll.md5s[key]
        return found

    def hold(
        self, md5s: Mapping[ConfigKey, str], timeout_ms: int, client: str, deliver: Deliver
    ) -> HeldPoll:
        """Hold a poll whose configs are all current (the caller checked `changed`):
        `deliver` is called once, from the event loop, with the changed configs when one
        changes, or with [] when the hold ends; never after `release`. TooManyPollsError
        when the node holds `max_polls` already."""
        if self._held >= self.max_polls:
            raise TooManyPollsError(
                f"this node holds {self._held} long polls, its limit (config-max-polls); "
                "try another node or later"
            )
        poll = HeldPoll(md5s, client, deliver)
        poll.timer = asyncio.get_running_loop().call_later(
            self.hold_seconds(timeout_ms), self._expire, poll
        )
        self._held += 1
        for key in md5s:
            self._by_key.setdefault(key, set()).add(poll)
        return poll

    def release(self, poll: HeldPoll) -> None:
        """Drop a held poll without answering it (its client left). Idempotent."""
        if poll.timer is None:
            return
        poll.timer.cancel()
        poll.timer = None
        self._held -= 1
        for key in poll.md5s:
            polls = self._by_key.get(key)
            if polls is not None:
                polls.discard(poll)
                if not polls:
                    del self._by_key[key]

    def _expire(self, poll: HeldPoll) -> None:
        self.release(poll)
        self._deliver(poll, [])

    @staticmethod
    def _deliver(poll: HeldPoll, changed: list[ConfigKey]) -> None:
        """Answer one poll. It runs inside the replica's applied-changes event: whatever
        one answer does wrong is logged, and the other polls and subscribers go on."""
        try:
            poll.deliver(changed)
        except Exception:
            logger.exception("answering a long poll of %s failed", poll.client or "?")

    async def poll(
        self, md5s: Mapping[ConfigKey, str], timeout_ms: int, client: str = ""
    ) -> list[ConfigKey]:
        """`hold` for a caller that waits in a task: the changed configs at once if any,
        else once one changes, else [] when the hold ends."""
        changed = self.changed(md5s)
        if changed:
            return changed
        answer: asyncio.Future[list[ConfigKey]] = asyncio.get_running_loop().create_future()

        def deliver(changed: list[ConfigKey]) -> None:
            if not answer.done():  # cancelled, its task not yet resumed to release it
                answer.set_result(changed)

        poll = self.hold(md5s, timeout_ms, client, deliver)
        try:
            return await answer
        finally:
            self.release(poll)

    def on_changes(self, datum_keys: Iterable[str]) -> None:
        """Wake the polls watching any config among the changed datums (event loop)."""
        if not self._by_key:
            return
        woken_at: float | None = None
        for key in changed_configs(datum_keys):
            for poll in tuple(self._by_key.get(key, ())):
                if poll.timer is None:
                    continue  # answered for an earlier key of this batch
                changed = self.changed(poll.md5s)
                if changed:
                    if woken_at is None:
                        woken_at = time.perf_counter()
                    self.release(poll)
                    self._deliver(poll, changed)
                    if self._on_notify is not None:
                        self._on_notify(time.perf_counter() - woken_at)

    def close(self) -> None:
        """Answer every held poll with [] (the node stops): their clients poll again,
        elsewhere if this node is gone."""
        polls = {poll for held in self._by_key.values() for poll in held}
        for poll in polls:
            self.release(poll)
            self._deliver(poll, [])
