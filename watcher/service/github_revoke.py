"""Report leaked GitHub tokens to GitHub for revocation (`containment.auto.github_revoke`).

GitHub's "Revoke a list of credentials": `POST {api}/credentials/revoke` with JSON
`{"credentials": [...]}`, up to 1,000 a request; on github.com unauthenticated (an authenticated
request is refused), 60 requests an hour; on GitHub Enterprise Server under its own API base and
authenticated (`github_token`). `202 Accepted`: GitHub revokes them and tells their owners (it cannot
be undone); `422`: validation failed or the endpoint is being spammed (final here: never retried
into a storm); a rate limit (`429`, or `403` with `x-ratelimit-remaining: 0`) and 5xx are retried
after `retry-after` / `x-ratelimit-reset`.

Which tokens: only GitHub tokens the secret check found with a valid format (classic and OAuth/app
tokens carry a CRC32 checksum) and whose kind the endpoint takes: `ghp_`, `github_pat_`, `gho_`,
`ghu_`, `ghr_` (an installation token `ghs_` expires within the hour and is not accepted).

The raw value is never stored. The job records each token's reference (the sha256 prefix its
redacted form shows, as in the finding) and, when it runs, obtains the values again from the
release itself: the artifact is downloaded from its registry and scanned with the credentials kept
in memory, and only tokens whose reference is in the job are sent. So a kill -9 anywhere leaves a
pending job that does the same again after the restart, and nothing secret sits in the store; the
cost is one more download and scan of a release that leaked GitHub tokens. The revocation job runs
before an unpublish of the same release (which would take the artifact away).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

import aiohttp
import orjson

from watcher.ecosystems.actions import ActionResult
from watcher.ecosystems.http import safe_url
from watcher.model import Finding, Release
from watcher.redact import redact
from watcher.scanning.checks.base import ScanOptions
from watcher.scanning.limits import ArchiveLimits
from watcher.scanning.scan import ScanRequest, scan_artifact

PUBLIC_API = "https://api.github.com"
ACCEPTED_PREFIXES = ("ghp_", "github_pat_", "gho_", "ghu_", "ghr_")
GITHUB_RULES = frozenset({"github-token", "github-fine-grained-pat"})
MAX_PER_REQUEST = 1000
PER_HOUR = 60
MAX_ARTIFACT_BYTES = 512 * 1024 * 1024


def reference(value: str) -> str:
    """What the store keeps of a token: the sha256 prefix its redacted form shows."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]


# the redacted form a finding's message carries (watcher.redact): first 4 characters, length, hash
_REDACTED = re.compile(r"\b(ghp_|gho_|ghu_|ghr_|gith)…\((\d+) chars, sha256:([0-9a-f]{12})\)")


def revocable(finding: Finding) -> tuple[str, str] | None:
    """(reference, redacted) of a finding that is a validated GitHub token the endpoint takes.
    The stored finding keeps its message (with the redacted token), not its evidence: a token
    whose checksum failed says so there and is left alone."""
    if finding.rule not in GITHUB_RULES or "checksum invalid" in finding.message:
        return None
    if finding.evidence.get("checksum_valid") is False or finding.evidence.get("encoding"):
        return None
    match = _REDACTED.search(finding.message)
    if match is None:
        return None
    return match.group(3), match.group(0)


def wanted(value: str, refs: Iterable[str]) -> bool:
    return value.startswith(ACCEPTED_PREFIXES) and reference(value) in set(refs)


@dataclass(frozen=True, slots=True)
class Submitted:
    status: int
    detail: str
    retry: bool = False
    retry_at: float | None = None


class GitHubRevoker:
    """POSTs tokens to the revocation endpoint, at most `PER_HOUR` requests an hour (counted in
    this process; GitHub counts per client address) and `MAX_PER_REQUEST` tokens a request."""

    def __init__(
        self,
        api_url: str | None,
        token: str | None,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 15.0,
    ) -> None:
        self.api_url = (api_url or PUBLIC_API).rstrip("/")
        self._token = token
        self._clock = clock
        self._sent: deque[float] = deque()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the token
        return f"GitHubRevoker({safe_url(self.api_url)!r})"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _room(self) -> float | None:
        """None when a request may go now, else when the hourly budget has room again."""
        now = self._clock()
        while self._sent and self._sent[0] <= now - 3600:
            self._sent.popleft()
        return None if len(self._sent) < PER_HOUR else self._sent[0] + 3600

    async def submit(self, tokens: Sequence[str]) -> Submitted:
        """Every token, in requests of at most `MAX_PER_REQUEST`; the first refusal stops it
        (a later run sends them all again: GitHub accepts a token reported twice)."""
        if not tokens:
            return Submitted(0, "no token to report")
        accepted = 0
        for start in range(0, len(tokens), MAX_PER_REQUEST):
            batch = list(tokens[start : start + MAX_PER_REQUEST])
            result = await self._post(batch)
            if result.status != 202:
                return result
            accepted += len(batch)
        return Submitted(202, f"{accepted} GitHub token(s) reported for revocation (202 Accepted)")

    async def _post(self, batch: list[str]) -> Submitted:
        wait_until = self._room()
        if wait_until is not None:
            return Submitted(
                429, "the revocation endpoint's 60 requests an hour are used", True, wait_until
            )
        headers = {
            "Accept": "application/vnd.github+json",
            "Content-Type": "application/json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "registry-watcher",
        }
        if self._token:  # GitHub Enterprise Server only: github.com refuses authenticated ones
            headers["Authorization"] = f"Bearer {self._token}"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = f"{self.api_url}/credentials/revoke"
        self._sent.append(self._clock())
        try:
            async with self._session.post(
                url, data=orjson.dumps({"credentials": batch}), headers=headers
            ) as response:
                body = await response.read()
                return self._classify(response.status, response.headers, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Submitted(0, f"{type(exc).__name__} talking to {safe_url(url)}", True)

    def _classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Submitted:
        if status == 202:
            return Submitted(202, "accepted")
        why = _message(body)
        limited = status == 429 or (status == 403 and headers.get("x-ratelimit-remaining") == "0")
        if limited:
            return Submitted(
                status, f"HTTP {status}: rate limited: {why}", True, self._retry_at(headers)
            )
        if status >= 500:
            return Submitted(status, f"HTTP {status}: {why}", True, self._retry_at(headers))
        hint = ""
        if status == 422:
            hint = " (validation failed, or GitHub sees the endpoint spammed: not retried)"
        elif status in (401, 403):
            hint = (
                " (github.com takes this request only unauthenticated; GitHub Enterprise Server "
                "wants containment.auto.github_token)"
            )
        return Submitted(status, f"HTTP {status}: {why}{hint}")

    def _retry_at(self, headers: Mapping[str, str]) -> float | None:
        after = headers.get("retry-after")
        if after:
            try:
                return self._clock() + max(0.0, float(after))
            except ValueError:
                try:
                    return parsedate_to_datetime(after).timestamp()
                except (TypeError, ValueError):
                    pass
        reset = headers.get("x-ratelimit-reset")
        if reset:
            try:
                return float(reset)
            except ValueError:
                return None
        return None


_TOKENS = re.compile(r"(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,}")


def _message(body: bytes) -> str:
    """GitHub's message, on one line, any token in it redacted (it is recorded and paged)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace") or "(no body)"
    else:
        text = str(doc.get("message") or doc) if isinstance(doc, dict) else str(doc)
    text = _TOKENS.sub(lambda m: redact(m.group()), text)
    return " ".join(text.split())[:200]


@runtime_checkable
class Downloader(Protocol):
    """A connected registry's download (`watcher.ecosystems.base.Registry`)."""

    async def download(
        self, release: Release, dest: Path, *, max_bytes: int
    ) -> tuple[Release, list[Path]]: ...


class ReleaseTokens:
    """Obtains a release's GitHub tokens again from its artifact (never from the store)."""

    def __init__(
        self,
        scan_options: ScanOptions | None = None,
        limits: ArchiveLimits | None = None,
        scratch: Path | None = None,
    ) -> None:
        self._options = replace(scan_options or ScanOptions(), keep_credentials=True)
        self._limits = limits or ArchiveLimits()
        self._scratch = scratch

    async def extract(
        self, registry: Downloader, release: Release, refs: Sequence[str]
    ) -> list[str]:
        """The values of the tokens with these references in the release as served now."""
        found: dict[str, str] = {}
        if self._scratch is not None:
            self._scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="revoke-", dir=self._scratch) as tmp:
            _, paths = await registry.download(release, Path(tmp), max_bytes=MAX_ARTIFACT_BYTES)
            for path in paths:
                request = ScanRequest(
                    path,
                    release.ecosystem,
                    release.name,
                    release.version,
                    options=self._options,
                    limits=self._limits,
                )
                report = await asyncio.to_thread(scan_artifact, request)
                for credential in report.credentials:
                    if wanted(credential.value, refs):
                        found[reference(credential.value)] = credential.value
                report.credentials = []
        return list(found.values())


def revoke_result(submitted: Submitted, manual: str | None) -> ActionResult:
    return ActionResult(
        submitted.status == 202,
        submitted.detail,
        retry=submitted.retry,
        manual=manual,
        retry_at=submitted.retry_at,
    )
