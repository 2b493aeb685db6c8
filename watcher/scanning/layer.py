"""One layer of an archive being read, and the checks every member of it goes through.

A layer is the outer file or an archive nested in it (read from the bytes its outer layer already
inflated). The tar and zip readers (`tarlayer`, `ziplayer`) yield a layer's members; each member's
name is admitted here first (member-count limit, traversal, names that hide what they are,
duplicates), and the readers report oversized members, links and corruption through the layer, so
every anomaly of the tree collects in one list.
"""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from watcher.model import Category, Finding, Member, MemberKind, Severity
from watcher.scanning.limits import ArchiveLimits, ArchiveTree, declared_size

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MAX_NAME_DEPTH = 64
_MAX_NAME_BYTES = 1024


def anomaly(
    rule: str,
    severity: Severity,
    path: str,
    message: str,
    *,
    key: str = "",
    evidence: dict[str, object] | None = None,
) -> Finding:
    return Finding(
        rule=rule,
        category=Category.ARCHIVE_ANOMALY,
        severity=severity,
        path=path,
        message=message,
        key=key,
        evidence=dict(evidence or {}),
    )


def normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _unsafe_path_reason(name: str) -> str | None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "parent-directory (..) component"
    return None


def _shown(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:80] + "…")


@dataclass(slots=True, eq=False)
class Layer:
    """The state of one layer: where its bytes come from, its place in the tree (`prefix` is
    `outer!` for a nested layer), and what it read. `anomalies` and `tree` are shared by every
    layer of one archive."""

    path: Path  # the outer archive file
    limits: ArchiveLimits
    format: str
    tree: ArchiveTree
    anomalies: list[Finding] = field(default_factory=list)
    prefix: str = ""
    depth: int = 0
    data: bytes | bytearray | None = None  # a nested layer's bytes
    bytes_read: int = 0
    sha256: str = ""  # of the archive file (outer layer only)
    seen: set[str] = field(default_factory=set)

    def nested(self, member: Member, fmt: str) -> Layer:
        return Layer(
            path=self.path,
            limits=self.limits,
            format=fmt,
            tree=self.tree,
            anomalies=self.anomalies,
            prefix=member.path + "!",
            depth=self.depth + 1,
            data=member.data,
        )

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        return self.path.open("rb")

    def admit(self, name: str) -> str | None:
        """Record per-name anomalies; the member's path through the layers, or None once the
        member-count limit stops the read."""
        tree = self.tree
        tree.members += 1
        path = self.prefix + name
        if tree.members > self.limits.max_members:
            tree.stopped = True
            self.anomalies.append(
                anomaly(
                    "archive-too-many-members",
                    Severity.HIGH,
                    path,
                    f"more than {self.limits.max_members:,} members; reading stopped",
                )
            )
            return None
        reason = _unsafe_path_reason(name)
        if reason:
            self.anomalies.append(
                anomaly(
                    "archive-path-traversal",
                    Severity.HIGH,
                    path,
                    f"member name has an {reason}: an extractor may write outside its target",
                )
            )
        else:
            self._hiding_name(name, path)
        if name in self.seen:
            self.anomalies.append(
                anomaly(
                    "archive-duplicate-member",
                    Severity.MEDIUM,
                    path,
                    "the same name appears twice: installers may take either copy",
                )
            )
        self.seen.add(name)
        return path

    def _hiding_name(self, name: str, path: str) -> None:
        """Names that hide what they are: `archive-name-traversal-lookalike` (medium) when the name
        normalises (NFKC, backslashes as separators) to a traversal, `archive-name-control-chars`
        (medium) for control characters or line breaks, `archive-name-too-deep` (low) past
        `_MAX_NAME_DEPTH` directory levels, `archive-name-too-long` (low) past 1,024 bytes."""
        lookalike = unicodedata.normalize("NFKC", name).replace("\\", "/")
        if lookalike != name and _unsafe_path_reason(lookalike):
            self.anomalies.append(
                anomaly(
                    "archive-name-traversal-lookalike",
                    Severity.MEDIUM,
                    path,
                    "member name normalises to a parent-directory or absolute path "
                    f"({_shown(lookalike)}): a tool that normalises names may write outside "
                    "its target",
                )
            )
        if _CONTROL.search(name):
            self.anomalies.append(
                anomaly(
                    "archive-name-control-chars",
                    Severity.MEDIUM,
                    path,
                    "member name has control characters or line breaks: listings and logs show "
                    "something other than what is there",
                )
            )
        depth = name.count("/")
        if depth > _MAX_NAME_DEPTH:
            self.anomalies.append(
                anomaly(
                    "archive-name-too-deep",
                    Severity.LOW,
                    path,
                    f"member name {depth:,} directory levels deep (limit {_MAX_NAME_DEPTH})",
                    evidence={"depth": depth},
                )
            )
        length = len(name.encode("utf-8", "surrogateescape"))
        if length > _MAX_NAME_BYTES:
            self.anomalies.append(
                anomaly(
                    "archive-name-too-long",
                    Severity.LOW,
                    path,
                    f"member name of {length:,} bytes (limit {_MAX_NAME_BYTES:,})",
                    evidence={"name_bytes": length},
                )
            )

    def too_large(self, name: str, size: int) -> bool:
        if size <= self.limits.max_member_bytes:
            return False
        self.anomalies.append(
            anomaly(
                "archive-member-too-large",
                Severity.MEDIUM,
                name,
                f"member declared as {declared_size(size):,} bytes exceeds the "
                f"{self.limits.max_member_bytes:,}-byte limit; its content was not scanned",
                evidence={"declared_size": declared_size(size)},
            )
        )
        return True

    def corrupt(self, exc: BaseException, where: str) -> None:
        self.anomalies.append(
            anomaly(
                "archive-corrupt",
                Severity.HIGH,
                where,
                f"archive is truncated or corrupt ({type(exc).__name__}: {exc}); "
                "scanned what could be read",
            )
        )

    def link_anomaly(self, name: str, kind: MemberKind, target: str) -> None:
        escapes = _unsafe_path_reason(target) is not None
        self.anomalies.append(
            anomaly(
                "archive-link",
                Severity.HIGH if escapes else Severity.MEDIUM,
                name,
                f"{kind.value} to {target!r}"
                + (
                    ": points outside the package" if escapes else ": links are unusual in packages"
                ),
                key=target,
            )
        )
