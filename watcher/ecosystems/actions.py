"""The containment actions an ecosystem's registry can take, behind one protocol.

A job (`watcher.store.types.ContainmentJob`) names an action and its target; the ecosystem's
`ContainmentActions` does it against the package's own registry and says how it went. An action
that cannot succeed by retrying (no rights, 2FA required, no API at all) is final; a 5xx, 429 or
network failure is retried by the caller with backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from watcher.store.types import ContainmentJob


@dataclass(frozen=True, slots=True)
class ActionResult:
    done: bool  # the registry now shows the change (or already did)
    detail: str  # in words, for the incident and the page
    retry: bool = False  # not done, but worth another attempt later (transient)
    manual: str | None = None  # the exact command for a human when it was not done
    retry_at: float | None = None  # when the other side said to try again (a rate limit)


class ContainmentActions(Protocol):
    """One ecosystem's registry writes for automatic containment."""

    async def perform(self, job: ContainmentJob) -> ActionResult: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class NoWriteApi:
    """An ecosystem whose registry has no API for containment (PyPI: yank and delete are in the
    web UI only, behind re-authentication): every job is final with that reason."""

    reason: str

    async def perform(self, job: ContainmentJob) -> ActionResult:
        return ActionResult(False, self.reason, manual=job.params.get("manual"))

    async def close(self) -> None:
        return None
