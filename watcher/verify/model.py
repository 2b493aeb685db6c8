"""What a liveness check says about one credential, and the settings it runs under."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

# the providers a credential can be verified with (watcher.verify.providers has one verifier each)
PROVIDER_NAMES = (
    "github",
    "gitlab",
    "npm",
    "slack",
    "stripe",
    "openai",
    "anthropic",
    "sendgrid",
    "twilio",
    "aws",
)


class Verdict(StrEnum):
    LIVE = "live"  # the provider accepted it
    REVOKED = "revoked"  # the provider said it is not valid (revoked, deleted, expired)
    # no answer to trust: timeout, 5xx, rate limit, an answer we do not know, or no verifier.
    # Never read as "inactive": an unreachable provider proves nothing.
    UNVERIFIED = "unverified"


@dataclass(frozen=True, slots=True)
class Outcome:
    provider: str
    verdict: Verdict
    checked_at: datetime
    # why, in words that carry no secret: "HTTP 401", "timeout", "rate limited (Retry-After 30s)"
    detail: str = ""

    def evidence(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "provider": self.provider,
            "checked_at": self.checked_at.isoformat().replace("+00:00", "Z"),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class VerifySettings:
    """`verify:` in the configuration, in the form the verifier needs."""

    timeout: float = 5.0
    # provider → base URL; a provider missing here uses its documented public API (npm: the
    # package's registry)
    urls: Mapping[str, str] = field(default_factory=dict)
    rate: float = 5.0  # calls per second per provider at most
    # tests only: allow http:// to a loopback address (a local stand-in); never any other host
    insecure_loopback: bool = False
