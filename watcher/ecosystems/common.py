"""What the built-in units answer the same way, from their own parts.

A unit package keeps each of its jobs in a module (`artifacts`, `provenance`, `runbook`); a unit
built on `UnitParts` names those modules and its name rule, and the questions of the protocol that
only hand over to them are answered here once. A unit overrides what its registry does otherwise
(npm names its registry on a private registry's commands; PyPI knows its index's web pages).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from watcher.ecosystems.base import Identity
from watcher.ecosystems.runbook import RunbookInputs
from watcher.model import (
    Artifact,
    AttestationIdentity,
    Ecosystem,
    Finding,
    Release,
    RunbookStep,
)


class ArtifactRules(Protocol):
    """A unit's `artifacts` module: how its artifacts name themselves."""

    def identify(
        self, leaf: str, data: bytes | bytearray, current: Ecosystem | None
    ) -> Identity | None: ...

    def claims_filename(self, filename: str) -> bool: ...

    def package_relative(self, path: str) -> str: ...


class ProvenanceRules(Protocol):
    """A unit's `provenance` module."""

    def compare(self, target: Release, baseline: Release) -> list[Finding]: ...

    def attestation_url(
        self, registry_url: str, release: Release, artifact: Artifact
    ) -> str | None: ...

    def attestation_identity(self, document: Any) -> AttestationIdentity | None: ...


class RunbookRules(Protocol):
    """A unit's `runbook` module: its takedown steps and its wording for a stolen token."""

    def steps(self, inputs: RunbookInputs) -> list[RunbookStep]: ...

    def stolen_token_steps(self, inputs: RunbookInputs, why: str) -> list[RunbookStep]: ...


class UnitParts:
    """The part of `EcosystemUnit` a unit answers from its name rule and its modules."""

    name: Ecosystem
    ref_separator: str
    name_rule: re.Pattern[str]  # a package name, `*`/`?` allowed for patterns
    artifacts: ArtifactRules
    provenance: ProvenanceRules
    runbook: RunbookRules

    def check_name(self, name: str) -> str | None:
        if self.name_rule.fullmatch(name):
            return None
        return f"expected a valid {self.name.value} package name or pattern"

    def ref(self, name: str, version: str) -> str:
        return f"{name}{self.ref_separator}{version}"

    def token_registry(self, section: Any, name: str) -> str | None:
        return None

    # -- artifacts -----------------------------------------------------------------------------

    def identify(
        self, leaf: str, data: bytes | bytearray, current: Ecosystem | None
    ) -> Identity | None:
        return self.artifacts.identify(leaf, data, current)

    def claims_filename(self, filename: str) -> bool:
        return self.artifacts.claims_filename(filename)

    def package_relative(self, path: str) -> str:
        return self.artifacts.package_relative(path)

    def compare_provenance(self, target: Release, baseline: Release) -> list[Finding]:
        return self.provenance.compare(target, baseline)

    def attestation_url(
        self, registry_url: str, release: Release, artifact: Artifact
    ) -> str | None:
        return self.provenance.attestation_url(registry_url, release, artifact)

    def attestation_identity(self, document: Any) -> AttestationIdentity | None:
        return self.provenance.attestation_identity(document)

    # -- runbook -------------------------------------------------------------------------------

    def runbook_inputs(self, inputs: RunbookInputs, section: Any) -> RunbookInputs:
        return inputs

    def runbook_steps(self, inputs: RunbookInputs) -> list[RunbookStep]:
        return self.runbook.steps(inputs)

    def stolen_token_steps(self, inputs: RunbookInputs, why: str) -> list[RunbookStep]:
        return self.runbook.stolen_token_steps(inputs, why)

    def for_registry(
        self, steps: Sequence[RunbookStep], inputs: RunbookInputs
    ) -> list[RunbookStep]:
        return list(steps)

    def runbook_links(self, inputs: RunbookInputs) -> Mapping[str, str]:
        return {}

    def takedown_command(self, name: str, version: str) -> str | None:
        return None
