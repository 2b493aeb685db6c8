"""The resolved `expect:` of one package (owner keys, then the package's keys over them), as the
checks read it. Plain values: the configuration model builds them, nothing here reads the config."""

from __future__ import annotations

from dataclasses import dataclass, field

VERSION_PLACEHOLDER = "{version}"


@dataclass(frozen=True, slots=True)
class TagExpectation:
    """`expect.tag`: the release's tag must exist in this git repository."""

    repository: str  # any URL git accepts (https://, ssh://, file://, a path)
    pattern: str = "v" + VERSION_PLACEHOLDER  # the tag name, `{version}` replaced
    # the `Authorization` header value for a private repository (a secret: never logged)
    auth_header: str | None = field(default=None, repr=False)

    def tag_for(self, version: str) -> str:
        """The tag name this version must have."""
        return self.pattern.replace(VERSION_PLACEHOLDER, version)


@dataclass(frozen=True, slots=True)
class ProvenanceExpectation:
    """`expect.provenance`: the source repository and workflow a release's attestation must name
    (a field left None is not compared)."""

    repository: str | None = None
    workflow: str | None = None


@dataclass(frozen=True, slots=True)
class Expectations:
    """What one package's releases must be. The defaults expect nothing."""

    approval: bool = False  # every artifact matches an approval from the gate
    tag: TagExpectation | None = None
    publishers: tuple[str, ...] | None = None  # None: any publisher; else one of these
    provenance: ProvenanceExpectation | None = None

    @property
    def empty(self) -> bool:
        return (
            not self.approval
            and self.tag is None
            and self.publishers is None
            and (self.provenance is None)
        )


NO_EXPECTATIONS = Expectations()
