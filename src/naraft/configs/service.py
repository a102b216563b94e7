"""ConfigService: the Nacos config operations, as validate → stamp → propose → await apply,
and the reads, linearizable through the read barrier.

A publish or delete is acknowledged once its entry is committed and applied on the node
that proposed it (the leader; followers forward writes). A read first passes the read
barrier (Raft's read index: on the leader, or forwarded to it by the API), so a read that
starts after an acknowledged publish, on any node, sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from naraft.configs import validate
from naraft.configs.archive import ArchiveItem
from naraft.configs.commands import (
    Change,
    ConfigCommand,
    DeleteConfig,
    DeleteConfigs,
    PruneHistory,
    PublishConfig,
    encode_config_command,
)
from naraft.configs.model import ConfigKey
from naraft.configs.settings import ConfigSettings
from naraft.configs.state import ConfigApplied, ConfigRejected, ConfigState
from naraft.configs.validate import CloneSource, RawPublish
from naraft.errors import (
    CommandRejectedError,
    ConflictError,
    InvalidArgumentError,
    QuotaExceededError,
    UnauthorizedError,
    UnavailableError,
)
from naraft.state.rejections import EntryRejected, RejectionKind


class Clock(Protocol):
    def now_ms(self) -> int: ...


class Proposer(Protocol):
    """The replica, as the config service sees it."""

    async def propose(self, command: bytes) -> object: ...

    async def read_barrier(self) -> None: ...


class WriteGuard(Protocol):
    def quota_refusal(self) -> str | None: ...


CAS_FAILED_MESSAGE = "Cas publish fail, server md5 may have changed."
IMPORT_WRITES_IN_FLIGHT = 32
"""An import's publishes proposed at once (distinct keys: their order does not matter),
so that the log batches them instead of one commit round (and fsync) per config."""


class SamePolicy(Enum):
    """Nacos's `SameConfigPolicy`: what an import does with a config that exists."""

    ABORT = "ABORT"
    SKIP = "SKIP"
    OVERWRITE = "OVERWRITE"


@dataclass(slots=True)
class ImportOutcome:
    """Nacos's import answer data: written, skipped (existing, SKIP; or left unwritten by
    an ABORT) and, for ABORT, the configs that exist."""

    succ_count: int = 0
    skip_data: list[ConfigKey] = field(default_factory=list)
    fail_data: list[ConfigKey] = field(default_factory=list)


class ImportItemError(InvalidArgumentError):
    """A config in an import zip that a publish would refuse (nothing written)."""


class ImportInterruptedError(UnavailableError):
    """An import that failed after writing some configs (e.g. leadership lost)."""

    def __init__(self, written: int, cause: BaseException) -> None:
        super().__init__(
            f"the import stopped after writing {written} configs: {cause}; "
            "import the zip again with policy OVERWRITE to finish it"
        )
        self.written = written
        self.cause = cause


class ConfigService:
    """Nacos config operations over one node's config state and its proposer."""

    def __init__(
        self,
        state: ConfigState,
        proposer: Proposer,
        clock: Clock,
        settings: ConfigSettings,
        *,
        guard: WriteGuard | None = None,
    ) -> None:
        self._state = state
        self._proposer = proposer
        self._clock = clock
        self._settings = settings
        self._guard = guard

    @property
    def state(self) -> ConfigState:
        return self._state

    @property
    def settings(self) -> ConfigSettings:
        return self._settings

    async def read_barrier(self) -> None:
        await self._proposer.read_barrier()

    def _change(self, src_ip: str, src_user: str) -> Change:
        return Change(
            src_ip=src_ip[: validate.MAX_SRC_CHARS],
            src_user=src_user[: validate.MAX_SRC_CHARS],
            stamped_at_ms=self._clock.now_ms(),
            retention_ms=self._settings.retention_ms,
        )

    async def _propose(self, command: ConfigCommand, *, freeing: bool = False) -> ConfigApplied:
        if self._guard is not None and not freeing:
            refusal = self._guard.quota_refusal()
            if refusal is not None:
                raise QuotaExceededError(refusal)
        result = await self._proposer.propose(encode_config_command(command))
        if isinstance(result, EntryRejected):
            if result.kind is RejectionKind.QUOTA:
                raise QuotaExceededError(f"state quota exceeded: {result.detail}")
            raise CommandRejectedError(
                f"the command committed at index {result.index} but was rejected on apply "
                f"(nothing changed): {result.detail}"
            )
        if isinstance(result, ConfigRejected):
            raise ConflictError(CAS_FAILED_MESSAGE)
        if not isinstance(result, ConfigApplied):
            raise TypeError(f"apply returned {type(result).__name__}, not ConfigApplied")
        return result

    def parse_publish(self, raw: RawPublish, src_ip: str = "", src_user: str = "") -> PublishConfig:
        """The command a publish request stands for; InvalidArgumentError naming the
        parameter (nothing proposed)."""
        key = validate.config_key(raw.data_id, raw.group, raw.tenant)
        content = validate.content(raw.content, self._settings.max_content_bytes)
        return PublishConfig(
            key=key,
            content=content,
            app_name=validate.optional_text(
                "appName", raw.app_name, validate.MAX_APP_NAME_CHARS, "too long appName, over 128"
            ),
            type=validate.config_type(raw.type),
            desc=validate.optional_text(
                "desc", raw.desc, validate.MAX_DESC_CHARS, "too long desc, over 128"
            ),
            config_tags=validate.config_tags(raw.config_tags),
            cas_md5=validate.cas_md5(raw.cas_md5),
            change=self._change(src_ip, src_user),
        )

    async def publish(self, raw: RawPublish, src_ip: str = "", src_user: str = "") -> None:
        """`POST /configs`: create or replace; ConflictError when `casMd5` does not match."""
        await self._propose(self.parse_publish(raw, src_ip, src_user))

    async def import_configs(
        self,
        items: list[ArchiveItem],
        tenant: str,
        policy: SamePolicy,
        src_ip: str = "",
        src_user: str = "",
        where: str = "in the zip",
    ) -> ImportOutcome:
        """Publish the configs of an import zip into `tenant`, one log entry each. Every
        item is validated as a publish is, and the existing ones found, before anything is
        written: a bad item (ImportItemError naming it) or, with ABORT, any existing config
        writes nothing. Existing ones are decided on the state after the read barrier; a
        config another client creates while the import runs is overwritten."""
        commands: list[PublishConfig] = []
        for item in items:
            raw = RawPublish(
                data_id=item.data_id,
                group=item.group,
                tenant=tenant,
                content=item.content,
                app_name=item.app_name,
                type=item.type,
                desc=item.desc,
            )
            try:
                commands.append(self.parse_publish(raw, src_ip, src_user))
            except InvalidArgumentError as error:
                raise ImportItemError(
                    error.field,
                    error.rule,
                    message=f"config {item.group}/{item.data_id} {where}: {error}",
                ) from None
        await self.read_barrier()
        outcome = ImportOutcome()
        existing = [c.key for c in commands if self._state.get(c.key) is not None]
        if existing and policy is SamePolicy.ABORT:
            taken = set(existing)
            outcome.fail_data = existing
            outcome.skip_data = [c.key for c in commands if c.key not in taken]
            return outcome
        skip = set() if policy is SamePolicy.OVERWRITE else set(existing)  # ABORT: none
        outcome.skip_data = [c.key for c in commands if c.key in skip]
        writes = [c for c in commands if c.key not in skip]
        for start in range(0, len(writes), IMPORT_WRITES_IN_FLIGHT):
            batch = writes[start : start + IMPORT_WRITES_IN_FLIGHT]
            results = await asyncio.gather(
                *(self._propose(c) for c in batch), return_exceptions=True
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            outcome.succ_count += len(results) - len(failures)
            if failures:
                if outcome.succ_count == 0:
                    raise failures[0]  # nothing written: retried or forwarded whole
                # NotLeaderError too: forwarding the request whole would redo the written
                raise ImportInterruptedError(outcome.succ_count, failures[0]) from failures[0]
        return outcome

    async def clone_configs(
        self,
        sources: tuple[CloneSource, ...],
        tenant: str,
        policy: SamePolicy,
        *,
        readable: Callable[[ConfigKey], bool],
        src_ip: str = "",
        src_user: str = "",
    ) -> ImportOutcome | None:
        """`POST /configs?clone=true`: copy the configs `sources` name by id (from any
        namespace) into `tenant`, each under the name its source gives or its own, with its
        content, type and app name, as an import of them would (the same validation,
        policies and all-or-nothing refusals). Ids that name no config are passed over;
        None when none names one (Nacos's "no data"). A source the caller may not read
        (`readable`) refuses the whole clone."""
        await self.read_barrier()
        wanted = {source.id: source for source in sources}
        found = sorted(
            (record for record in self._state.configs() if record.id in wanted),
            key=lambda record: record.id,
        )
        if not found:
            return None
        items: list[ArchiveItem] = []
        for record in found:
            if not readable(record.key):
                raise UnauthorizedError(  # its id only: its name is not the caller's to learn
                    f"no read permission on config id {record.id}, which the clone copies"
                )
            source = wanted[record.id]
            items.append(
                ArchiveItem(
                    group=source.group or record.key.group,
                    data_id=source.data_id or record.key.data_id,
                    content=record.content,
                    app_name=record.app_name or None,
                    type=record.type,
                )
            )
        return await self.import_configs(
            items, tenant, policy, src_ip=src_ip, src_user=src_user, where="to clone"
        )

    async def delete(self, key: ConfigKey, src_ip: str = "", src_user: str = "") -> None:
        """`DELETE /configs`: true whether or not the config existed (as Nacos)."""
        await self._propose(
            DeleteConfig(key=key, change=self._change(src_ip, src_user)), freeing=True
        )

    async def delete_ids(self, ids: tuple[int, ...], src_ip: str = "") -> tuple[ConfigKey, ...]:
        command = DeleteConfigs(ids=ids, change=self._change(src_ip, ""))
        return (await self._propose(command, freeing=True)).changed

    def prune_due(self) -> bool:
        """Whether the oldest history record is past the retention (the leader prunes)."""
        oldest = self._state.oldest_history_ms()
        return oldest is not None and oldest < self._clock.now_ms() - self._settings.retention_ms

    async def prune_history(self) -> None:
        await self._propose(PruneHistory(change=self._change("", "")), freeing=True)
