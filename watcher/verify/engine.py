"""Opt-in liveness checks for the credentials a scan found, and what their verdicts do to findings.

Rules of the road, all enforced here:
- a credential goes only to its own provider's configured base URL (or the documented public API;
  npm: the package's registry), over TLS; `insecure_loopback` lets tests use http:// to a loopback
  stand-in and nothing else; no URL from the artifact is ever used, no redirect followed;
- one read-only call per distinct credential per scan, each provider rate-limited;
- the value is in the request and nowhere else: logs, metrics and evidence carry the provider, the
  verdict and the finding's redacted key.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from asyncio_throttle.throttler import Throttler

from watcher import metrics
from watcher.model import Category, Credential, Finding, Report, Severity
from watcher.verify.model import Outcome, Verdict, VerifySettings
from watcher.verify.providers import PROVIDERS, Probe, Provider

log = structlog.get_logger(__name__)

_MAX_BODY = 64 * 1024


class CredentialVerifier:
    """Verifies credentials with their providers. One per process or scan; holds no secrets
    between calls. `providers` replaces the built-in table (tests)."""

    def __init__(
        self,
        settings: VerifySettings,
        *,
        providers: Mapping[str, Provider] = PROVIDERS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.providers = providers
        self.clock = clock
        period = 1.0
        rate = max(1, round(settings.rate * period))
        self._throttlers = {name: Throttler(rate_limit=rate, period=period) for name in providers}

    async def verify_report(self, report: Report, registry_url: str | None = None) -> None:
        """Verify each distinct credential of the report once, record the verdicts on its
        findings (severity follows them) and drop the raw values from the report."""
        credentials, report.credentials = report.credentials, []
        outcomes = await self.verify(credentials, registry_url)
        by_fingerprint: dict[str, Outcome] = {}
        for cred, outcome in zip(credentials, outcomes, strict=True):
            by_fingerprint[cred.finding.fingerprint or id_key(cred.finding)] = outcome
        for finding in report.findings:
            found = by_fingerprint.get(finding.fingerprint or id_key(finding))
            if found is not None:
                apply_outcome(finding, found)
            elif finding.category is Category.SECRET and "verification" not in finding.evidence:
                finding.evidence["verification"] = {
                    "verdict": Verdict.UNVERIFIED.value,
                    "provider": None,
                    "detail": "no verifier for this credential type",
                }
        for finding in report.findings:
            report.manifest.fingerprints[finding.fingerprint] = finding.severity
        report.findings.sort(
            key=lambda f: (-f.severity.rank, f.category.value, f.path, f.line or 0)
        )

    async def verify(
        self, credentials: Iterable[Credential], registry_url: str | None = None
    ) -> list[Outcome]:
        """One outcome per credential, in order; a credential seen twice is called once."""
        creds = list(credentials)
        distinct: dict[tuple[str, str], asyncio.Task[Outcome]] = {}
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout)
        ) as session:
            for cred in creds:
                key = (cred.provider, _digest(cred))
                if key not in distinct:
                    distinct[key] = asyncio.create_task(
                        self._verify_one(session, cred, registry_url)
                    )
            await asyncio.gather(*distinct.values())
        return [distinct[(c.provider, _digest(c))].result() for c in creds]

    async def _verify_one(
        self, session: aiohttp.ClientSession, cred: Credential, registry_url: str | None
    ) -> Outcome:
        provider = self.providers.get(cred.provider)
        if provider is None:
            return self._done(cred, Verdict.UNVERIFIED, "no verifier for this provider")
        base = self.settings.urls.get(provider.name) or provider.default_url
        if provider.name == "npm" and provider.name not in self.settings.urls:
            base = registry_url
        if not base:
            return self._done(cred, Verdict.UNVERIFIED, "no base URL configured")
        refusal = self._refuse(base)
        if refusal:
            return self._done(cred, Verdict.UNVERIFIED, refusal)
        try:
            probe = provider.build(cred, base)
            if probe is None:
                return self._done(
                    cred, Verdict.UNVERIFIED, "not verifiable from the artifact alone"
                )
            async with self._throttlers[provider.name]:
                status, headers, body = await _send(session, probe)
        except TimeoutError:
            return self._done(cred, Verdict.UNVERIFIED, "timeout")
        except aiohttp.ClientError as exc:
            return self._done(cred, Verdict.UNVERIFIED, f"connection failed ({type(exc).__name__})")
        except Exception as exc:  # a verifier's bug must not fail the scan
            # the type only: a message could quote the request
            return self._done(cred, Verdict.UNVERIFIED, f"verifier error ({type(exc).__name__})")
        if status == 429:
            after = headers.get("Retry-After")
            detail = "rate limited" + (f" (Retry-After {after}s)" if after else "")
            return self._done(cred, Verdict.UNVERIFIED, detail, status)
        if status >= 500:
            return self._done(cred, Verdict.UNVERIFIED, f"HTTP {status}", status)
        return self._done(cred, provider.read(status, body), f"HTTP {status}", status)

    def _refuse(self, base: str) -> str | None:
        """Why a base URL may not receive a credential, or None."""
        parts = urlsplit(base)
        if parts.scheme == "https" and parts.hostname:
            return None
        if parts.scheme == "http" and self.settings.insecure_loopback and _loopback(parts.hostname):
            return None
        return "refused: the provider URL is not https"

    def _done(
        self, cred: Credential, verdict: Verdict, detail: str, status: int | None = None
    ) -> Outcome:
        outcome = Outcome(cred.provider, verdict, self.clock(), detail)
        metrics.VERIFICATIONS.labels(cred.provider, verdict.value).inc()
        log.info(
            "credential_verified",
            stage="verify",
            provider=cred.provider,
            verdict=verdict.value,
            status=status,
            detail=detail,
            rule=cred.finding.rule,
            key=cred.finding.key,  # the redacted form
        )
        return outcome


async def _send(session: aiohttp.ClientSession, probe: Probe) -> tuple[int, Mapping[str, str], Any]:
    async with session.request(
        probe.method, probe.url, headers=dict(probe.headers), data=probe.body, allow_redirects=False
    ) as response:
        raw = await response.content.read(_MAX_BODY)
        text = raw.decode("utf-8", "replace")
        body: Any = text
        if "json" in response.headers.get("Content-Type", ""):
            try:
                body = json.loads(text)
            except ValueError:
                body = None
        return response.status, response.headers, body


def apply_outcome(finding: Finding, outcome: Outcome) -> None:
    """Severity follows the verdict: live → critical ("verified live at …"), revoked → low (the
    revoke step stays in the evidence), unverified → as found."""
    finding.evidence["verification"] = outcome.evidence()
    stamp = outcome.evidence()["checked_at"]
    if outcome.verdict is Verdict.LIVE:
        finding.severity = Severity.CRITICAL
        finding.message += f" (verified live at {stamp})"
    elif outcome.verdict is Verdict.REVOKED:
        finding.severity = Severity.LOW
        finding.message += (
            f" (the provider says it is not valid, checked at {stamp}: rotate it anyway)"
        )


def id_key(finding: Finding) -> str:
    """A stand-in fingerprint for a finding not yet fingerprinted."""
    return f"{finding.rule}\0{finding.path}\0{finding.key}"


def _digest(cred: Credential) -> str:
    material = f"{cred.value}\0{cred.companion or ''}".encode()
    return hashlib.sha256(material).hexdigest()


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
