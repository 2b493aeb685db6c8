"""What every unit's runbook steps are written from: the incident's inputs, and the few pieces
all registries' steps share (the files that leaked, secrets left in code, the CI gate).

`watcher.incidents.runbook` writes the steps every incident gets (a stolen publishing token, the
exposed credentials) and asks the incident's unit for the rest: its takedown steps, its own
wording for a stolen token, the registry named on its commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from watcher.model import Category, Ecosystem, Finding, RunbookStep

GOOD_PLACEHOLDER = "<last-good-version>"


@dataclass(frozen=True, slots=True)
class RunbookInputs:
    ecosystem: Ecosystem
    name: str
    version: str
    findings: Sequence[Finding]
    now: datetime
    published_at: datetime | None = None
    # the registry (npm) or index (PyPI Simple API) base URL from configuration; None = unknown
    registry_url: str | None = None
    # dist-tags that point at the bad version (npm), None when not known
    dist_tags: Sequence[str] | None = None
    previous_good: str | None = None
    # npm: False for a private registry (not npm's own default): every npm command names it with
    # --registry, and the public registry's policies and CDN mirrors are left out. None: unknown
    registry_public: bool | None = None
    # PyPI: False for an index that is not Warehouse (devpi, pypiserver, a mirror): no links to
    # management pages it lacks; its Simple API file list says whether the files are gone
    index_warehouse: bool | None = None

    @property
    def good(self) -> str:
        """The version to fall back to, or a placeholder saying to pick one."""
        return self.previous_good or GOOD_PLACEHOLDER


# Findings whose file should simply not have shipped: excluding the path is the fix. (A secret in
# a file that belongs in the package is fixed in the source instead.)
_EXCLUDABLE = (
    Category.SOURCE_MAP,
    Category.SENSITIVE_FILE,
    Category.VCS_METADATA,
    Category.UNEXPECTED_CONTENT,
)


def leaked_paths(inputs: RunbookInputs) -> list[str]:
    """The archive paths of files that should not have shipped, in finding order, once each."""
    paths: list[str] = []
    for finding in inputs.findings:
        path = finding.path.strip()
        if finding.category in _EXCLUDABLE and path and path not in paths:
            paths.append(path)
    return paths


def secrets_in_code(inputs: RunbookInputs) -> list[str]:
    return sorted(
        {f.path for f in inputs.findings if f.category is Category.SECRET and f.path}
        - set(leaked_paths(inputs))
    )


def list_paths(paths: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(f"`{p}`" for p in paths[:limit])
    more = len(paths) - limit
    return f"{shown} and {more} more" if more > 0 else shown


def code_secret_note(inputs: RunbookInputs) -> str:
    """The sentence a prevention step ends with when a secret sits in code that does ship."""
    paths = secrets_in_code(inputs)
    if not paths:
        return ""
    return (
        f" Take the secret out of the source of {list_paths(paths)} (load it at run time) "
        "before the next build."
    )


def ci_gate(command: str) -> RunbookStep:
    """The last step of every takedown: `command` builds, scans and publishes the artifact."""
    return RunbookStep(
        "Gate every publish in CI on `watcher scan` of the exact artifact to be uploaded.", command
    )
