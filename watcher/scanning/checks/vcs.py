"""`vcs-metadata`: version-control directories shipped inside a package (`.git/`, `.hg/`, `.svn/`…).
A shipped `.git/` with its objects gives away the whole history, deleted secrets included."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from watcher.model import Category, Finding, Member, MemberKind, Severity
from watcher.scanning.checks.base import Check, ScanContext

_VCS_DIRS = {
    ".git": "Git",
    ".hg": "Mercurial",
    ".svn": "Subversion",
    ".bzr": "Bazaar",
    "_darcs": "Darcs",
    "CVS": "CVS",
}
# Files whose presence means the history itself is recoverable.
_HISTORY_MARKERS = ("/objects/", "/packs/", "/store/", "/pristine/", "/.svn/wc.db", "/repository/")


@dataclass(slots=True)
class _Repo:
    system: str
    files: int = 0
    bytes: int = 0
    history: bool = False
    examples: list[str] = field(default_factory=list)


class VcsMetadataCheck(Check):
    category = Category.VCS_METADATA

    def __init__(self) -> None:
        self._repos: dict[str, _Repo] = {}

    def member(self, member: Member, ctx: ScanContext) -> Iterable[Finding]:
        parts = member.path.split("/")
        for depth, part in enumerate(parts[:-1] if member.kind is MemberKind.FILE else parts):
            system = _VCS_DIRS.get(part)
            if system is None:
                continue
            root = "/".join(parts[: depth + 1])
            repo = self._repos.setdefault(root, _Repo(system))
            if member.kind is MemberKind.FILE:
                repo.files += 1
                repo.bytes += member.size
                if len(repo.examples) < 5:
                    repo.examples.append(member.path)
                rest = "/" + "/".join(parts[depth:])
                if any(marker in rest for marker in _HISTORY_MARKERS):
                    repo.history = True
            break
        return ()

    def finish(self, ctx: ScanContext) -> Iterable[Finding]:
        for root, repo in sorted(self._repos.items()):
            if repo.files == 0:
                continue
            what = "with its object store (the full history is recoverable)" if repo.history else ""
            yield self.finding(
                "vcs-directory",
                Severity.HIGH if repo.history else Severity.MEDIUM,
                root + "/",
                f"{repo.system} metadata shipped: {repo.files:,} files, {repo.bytes:,} bytes {what}".rstrip(),
                evidence={
                    "files": repo.files,
                    "bytes": repo.bytes,
                    "history": repo.history,
                    "examples": repo.examples,
                },
            )
