"""The errors every layer above the Raft core may raise, and that the API edge maps to HTTP.

```
NaraftError
├── InvalidArgumentError(field, rule)   the request is malformed: names the field and the rule
│   └── AlreadyExistsError(field, rule) the thing to create exists (Nacos answers 400 for it)
├── NotFoundError(kind, name)           a namespace, service or instance is missing
├── UnauthorizedError                   bad token or cluster secret
├── UnavailableError                    no leader, no quorum, timed out waiting to commit
│   ├── ProposalDroppedError            the entry went to another leader
│   ├── OutcomeUnknownError             it may or may not have committed (e.g. timed out)
│   ├── DiskFullError                   this node's disk is full: no writes until space is freed
│   ├── QuotaExceededError              the state is at its size quota: deletes and reads only
│   └── UpgradeUnfinishedError          a command of a newer build, before every member runs it
├── ConflictError                       a compare-and-set that did not match: nothing changed
├── UnsupportedError                    a Nacos feature naraft does not serve (gray/tag configs)
└── CommandRejectedError                it committed, but applying it failed: nothing changed
```

`naraft.raft` keeps its own standalone errors (`RaftError`); the edge maps both. Only
`naraft.api.errors` knows status codes.
"""

from __future__ import annotations


class NaraftError(Exception):
    """Base of naraft's cross-layer errors."""


class InvalidArgumentError(NaraftError):
    """A request parameter broke a rule. `field` is the Open API name in snake_case."""

    def __init__(self, field: str, rule: str, *, message: str | None = None) -> None:
        self.field = field
        self.rule = rule
        self.message = message  # a client-facing message of its own (Nacos's), if any
        super().__init__(message if message is not None else f"{field}: {rule}")


class AlreadyExistsError(InvalidArgumentError):
    """The namespace or service to create exists already (`field` names what clashed)."""


class MissingTargetError(InvalidArgumentError):
    """A write named a service or instance that does not exist (`field`: `service_name` or
    `ip`). Nacos 1.x answers it as a bad parameter (400); its 2.x API says which is missing."""


class NotFoundError(NaraftError):
    """`kind` (namespace, service, instance) named `name` does not exist."""

    def __init__(self, kind: str, name: str, *, message: str | None = None) -> None:
        self.kind = kind
        self.name = name
        super().__init__(message if message is not None else f"no {kind} {name} found")


class UnauthorizedError(NaraftError):
    """A bad or missing token, or a wrong cluster secret."""


class UnavailableError(NaraftError):
    """The cluster cannot take the request now (no leader, no quorum, a timeout)."""


class ProposalDroppedError(UnavailableError):
    """The proposal was lost: its log slot went to another leader's entry. Safe to retry."""


class OutcomeUnknownError(UnavailableError):
    """The proposal may or may not commit later (timed out, leader lost while waiting)."""


class DiskFullError(UnavailableError):
    """This node cannot write its database because the disk is full. Nothing of the request
    was applied; the node takes no writes (and no linearizable reads) until space is freed,
    and keeps serving local reads from its applied state."""


class QuotaExceededError(UnavailableError):
    """The replicated state is at (or within the alarm margin of) its size quota, or this
    write would have pushed it past: nothing was applied. Deletes and reads still work."""


class UpgradeUnfinishedError(UnavailableError):
    """A command this build adds cannot be proposed yet: some member of the cluster does not
    speak the peer protocol version that brought it (a rolling upgrade is under way, or a
    member runs an older build). The message names the version and the members; nothing was
    written. It works once every member runs a build that speaks the version."""


class ConflictError(NaraftError):
    """A conditional write (a config's `casMd5`) whose condition did not hold: nothing was
    written."""


class UnsupportedError(NaraftError):
    """A Nacos feature naraft does not serve (gray/beta and tag configs, ...); the message
    says which."""


class CommandRejectedError(NaraftError):
    """The command committed, but every replica rejected it on apply (it failed to apply):
    nothing changed. A server bug, not the client's: retrying will not help."""
