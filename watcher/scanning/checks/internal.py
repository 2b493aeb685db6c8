"""`internal-reference`: what tells outsiders about the publisher's network and machines — URLs on
configured internal domains or private addresses, and absolute build paths naming a home directory."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from watcher.model import Category, Finding, Severity
from watcher.scanning.checks.base import Check, ScanContext, TextDoc, line_of
from watcher.scanning.checks.hosts import HostKind, classify_host
from watcher.scanning.checks.locations import Location, location_evidence, location_of
from watcher.scanning.needles import Hits, occurrences

_URL_TAIL = re.compile(r"[^\s'\"<>`\\)\]}]{1,2048}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}$")
_HOME_PATTERNS = (
    ("/Users/", re.compile(r"/Users/([A-Za-z0-9._-]{2,64})/")),
    ("/home/", re.compile(r"/home/([A-Za-z0-9._-]{2,64})/")),
    ("\\Users\\", re.compile(r"[A-Za-z]:\\{1,2}Users\\{1,2}([A-Za-z0-9._ -]{2,64})\\")),
)
# Names that identify nobody: CI runners, container defaults, documentation placeholders.
_GENERIC_USERS = frozenset(
    [
        "runner",
        "runneradmin",  # GitHub Actions' Windows and macOS runners
        "travis",
        "circleci",
        "jenkins",
        "node",
        "ubuntu",
        "debian",
        "ec2-user",
        "admin",
        "root",
        "user",
        "username",
        "your-username",
        "myuser",
        "myusername",
        "youruser",
        "yourusername",
        "asdf",
        "yourname",
        "you",
        "me",
        "name",
        "foo",
        "bar",
        "shared",
        "public",
        "guest",
        "default",
        "app",
        "build",
        "builder",
        "vagrant",
        "docker",
        "gitlab-runner",
        "buildkite",
        "appveyor",
        "vsts",
        "agent",
        "project",
        "workspace",
    ]
)
_MAX_FINDINGS_PER_DOC = 20
# A host under the team's own internal domains names their network wherever it appears. A bare
# private address or reserved name identifies little (every network has a 10.0.0.1), less so in
# tests and docs; a cloud metadata endpoint is the same address for everyone.
_SEVERITY = {
    HostKind.CONFIGURED: Severity.MEDIUM,
    HostKind.RESERVED_NAME: Severity.MEDIUM,
    HostKind.PRIVATE: Severity.LOW,
    HostKind.WELL_KNOWN: Severity.INFO,
}


_SEPARATOR = "://"


def iter_urls(text: str, hits: Hits | None = None) -> Iterator[tuple[int, str]]:
    """(offset, url) for every `scheme://…` in the text."""
    after = -1
    for position in occurrences(text, _SEPARATOR, hits):
        if position < after:
            continue
        after = position + 3
        start_window = text[max(0, position - 16) : position]
        scheme = _SCHEME.search(start_window)
        tail = _URL_TAIL.match(text, position + 3)
        if scheme and tail:
            start = position - len(scheme.group(0))
            yield start, text[start : tail.end()]


def doc_urls(doc: TextDoc) -> list[tuple[int, str]]:
    """`iter_urls` of a doc, found once for every check that reads them."""
    if doc.urls is None:
        doc.urls = list(iter_urls(doc.text, doc.hits))
    return doc.urls


class InternalReferenceCheck(Check):
    category = Category.INTERNAL_REFERENCE

    def needles(self) -> Iterable[str]:
        return (_SEPARATOR, *(needle for needle, _ in _HOME_PATTERNS))

    def text(self, doc: TextDoc, ctx: ScanContext) -> Iterable[Finding]:
        found = 0
        seen: set[str] = set()
        location: Location | None = None
        for offset, url in doc_urls(doc):
            if found >= _MAX_FINDINGS_PER_DOC:
                break
            host = classify_host(url, ctx.options.internal_domains)
            if host is None or host.reason in seen:
                continue
            seen.add(host.reason)
            if not found:  # where the document sits, once it has a finding
                location = location_of(doc.path)
            found += 1
            severity = _SEVERITY[host.kind]
            if location is not None and host.kind is HostKind.RESERVED_NAME:
                severity = Severity.LOW  # `wiki.internal` in a test is a made-up name
            evidence: dict[str, object] = {
                "url": _strip_credentials(url),
                "host_kind": host.kind.value,
            }
            evidence.update(location_evidence(location))
            yield self.finding(
                "internal-url",
                severity,
                doc.path,
                f"URL on {host.reason}",
                line=line_of(doc.text, offset),
                key=host.reason,
                evidence=evidence,
            )
        yield from self._home_paths(doc)

    def _home_paths(self, doc: TextDoc) -> Iterator[Finding]:
        seen: set[str] = set()
        for needle, pattern in _HOME_PATTERNS:
            after = -1
            for position in occurrences(doc.text, needle, doc.hits):
                if len(seen) >= _MAX_FINDINGS_PER_DOC:
                    break
                if position < after:
                    continue
                after = position + len(needle)
                start = max(0, position - 3)
                match = pattern.search(doc.text, start, position + len(needle) + 70)
                if match and not _inside_url(doc.text, match.start()):
                    user = match.group(1)
                    prefix = match.group(0)
                    if user.lower() not in _GENERIC_USERS and prefix not in seen:
                        seen.add(prefix)
                        yield self.finding(
                            "home-directory-path",
                            Severity.LOW,
                            doc.path,
                            f"absolute build path {prefix} reveals a user name and directory layout",
                            line=line_of(doc.text, match.start()),
                            key=prefix,
                            evidence={"prefix": prefix},
                        )


def _inside_url(text: str, offset: int) -> bool:
    """`https://www.iso.org/iso/home/standards/…` is a web page, not a build machine's home."""
    window = text[max(0, offset - 200) : offset]
    token_start = max(window.rfind(c) for c in " \t\n\"'`(<[=,") + 1
    token = window[token_start:]
    return "://" in token and not token.startswith("file://")


def _strip_credentials(url: str) -> str:
    """Internal URLs may carry user:password@; the secret check reports those, redacted."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "…@" + authority.rsplit("@", 1)[1]
    return f"{scheme}{sep}{authority}{slash}{path}"
