"""What reading one archive tree may cost, and what it has cost so far.

The outer file's limits apply to the whole tree: an archive nested in another counts its members and
inflated bytes against the same budget, and its ratio is measured against the outer file's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_member_bytes: int = 256 * _MiB  # a larger member is listed but its content is not read
    max_total_bytes: int = 2048 * _MiB  # uncompressed bytes read from one archive
    max_members: int = 100_000
    max_ratio: float = 200.0  # uncompressed / compressed
    ratio_floor_bytes: int = 16 * _MiB  # the ratio is enforced once this much was inflated
    max_nesting: int = 3  # archives inside archives are opened this many levels deep


@dataclass(frozen=True, slots=True)
class NestedPackage:
    """A nested archive that is itself a package (an earlier `npm pack`, a wheel, an sdist)."""

    path: str  # of the nested archive, through the layers
    ecosystem: str  # "npm" or "pypi"


class LimitExceeded(Exception):
    """A limit stopped the read; `rule` is the `archive-anomaly` rule it becomes."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(slots=True)
class ArchiveTree:
    """What one archive and every archive nested in it share: the outer limits apply to the whole
    tree (members, inflated bytes, ratio to the outer file's size)."""

    compressed: int  # bytes of the outer archive file
    members: int = 0
    inflated: int = 0
    stopped: bool = False  # a tree-wide limit was hit: every layer stops
    nested_packages: list[NestedPackage] = field(default_factory=list)

    def add_inflated(self, produced: int, limits: ArchiveLimits) -> None:
        """Count inflated bytes; LimitExceeded (and every layer stops) past `max_total_bytes`."""
        self.inflated += produced
        if self.inflated > limits.max_total_bytes:
            self.stopped = True
            raise LimitExceeded(
                "archive-size-limit",
                f"archive inflates past the limit of {limits.max_total_bytes:,} bytes; "
                "reading stopped",
            )

    def check_ratio(self, limits: ArchiveLimits) -> None:
        """LimitExceeded (and every layer stops) once the tree inflates past `max_ratio` of the
        outer file."""
        if self.inflated > limits.ratio_floor_bytes and self.inflated > limits.max_ratio * max(
            self.compressed, 1
        ):
            self.stopped = True
            raise LimitExceeded(
                "archive-compression-bomb",
                f"archives nested in this one inflate to {self.inflated:,} bytes, above "
                f"{limits.max_ratio:g}:1 of the outer {self.compressed:,}; reading stopped",
            )


MAX_DECLARED_SIZE = 2**63 - 1


def declared_size(value: int) -> int:
    """A size an archive header claims, as evidence: never negative, never past what a signed
    64-bit integer (JSON readers, SARIF, SQLite) holds."""
    return min(max(int(value), 0), MAX_DECLARED_SIZE)
