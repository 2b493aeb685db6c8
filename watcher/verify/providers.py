"""One small verifier per provider: the read-only identity call its documentation names, and how
to read the answer.

Each verifier builds one request against a base URL it is given (the configured one, never a URL
found in an artifact) and maps the documented answers to a verdict: the identity payload (200) is
`live`; the provider's "this credential is not valid" (mostly 401) is `revoked`; anything else —
rate limits, 5xx, answers not documented as saying either — is `unverified`. A 403 counts as live
only where the provider documents it as "valid key, lacking permission" (GitLab, Stripe,
Anthropic).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from watcher.model import Credential
from watcher.verify.model import Verdict


@dataclass(frozen=True, slots=True)
class Probe:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    # the documented public API; None where it depends on the package (npm: its registry)
    default_url: str | None
    build: Callable[[Credential, str], Probe | None]  # None: this credential cannot be checked
    read: Callable[[int, Any], Verdict]  # (HTTP status, parsed JSON body or None) → verdict


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + path


def _statuses(live: tuple[int, ...], revoked: tuple[int, ...]) -> Callable[[int, Any], Verdict]:
    def read(status: int, _body: Any) -> Verdict:
        if status in live:
            return Verdict.LIVE
        if status in revoked:
            return Verdict.REVOKED
        return Verdict.UNVERIFIED

    return read


def _bearer(path: str, method: str = "GET") -> Callable[[Credential, str], Probe | None]:
    def build(cred: Credential, base: str) -> Probe:
        headers = {"Authorization": f"Bearer {cred.value}", "Accept": "application/json"}
        return Probe(method, _join(base, path), headers)

    return build


# GitHub: GET /user answers 200 with the user for any valid token, 401 "Bad credentials" otherwise.
# A 403 is a rate limit or an SSO requirement: not proof either way.
GITHUB = Provider("github", "https://api.github.com", _bearer("/user"), _statuses((200,), (401,)))


def _gitlab(cred: Credential, base: str) -> Probe | None:
    # personal_access_tokens/self answers for personal, project and group access tokens (glpat-)
    if not cred.value.startswith("glpat-"):
        return None
    return Probe(
        "GET", _join(base, "/api/v4/personal_access_tokens/self"), {"PRIVATE-TOKEN": cred.value}
    )


def _gitlab_read(status: int, body: Any) -> Verdict:
    if status == 200:
        # a token past its expiry date still describes itself; it no longer authenticates
        if isinstance(body, dict) and (body.get("revoked") or body.get("active") is False):
            return Verdict.REVOKED
        return Verdict.LIVE
    if status == 403:  # authenticated, scope too narrow for this endpoint
        return Verdict.LIVE
    return Verdict.REVOKED if status == 401 else Verdict.UNVERIFIED


GITLAB = Provider("gitlab", "https://gitlab.com", _gitlab, _gitlab_read)

# npm: GET /-/whoami on the registry the package came from: 200 {"username"}, 401 otherwise.
NPM = Provider("npm", None, _bearer("/-/whoami"), _statuses((200,), (401,)))

_SLACK_INVALID = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)


def _slack_read(status: int, body: Any) -> Verdict:
    # auth.test answers HTTP 200 either way; the verdict is in `ok` / `error`
    if status != 200 or not isinstance(body, dict):
        return Verdict.UNVERIFIED
    if body.get("ok") is True:
        return Verdict.LIVE
    return Verdict.REVOKED if body.get("error") in _SLACK_INVALID else Verdict.UNVERIFIED


SLACK = Provider("slack", "https://slack.com", _bearer("/api/auth.test", "POST"), _slack_read)

# Stripe: GET /v1/account; 401 "Invalid API Key"; 403 a restricted key without this permission.
STRIPE = Provider(
    "stripe", "https://api.stripe.com", _bearer("/v1/account"), _statuses((200, 403), (401,))
)

# OpenAI: GET /v1/models; 401 invalid key; 403 is an unsupported region, not an answer on the key.
OPENAI = Provider(
    "openai", "https://api.openai.com", _bearer("/v1/models"), _statuses((200,), (401,))
)


def _anthropic(cred: Credential, base: str) -> Probe:
    headers = {"x-api-key": cred.value, "anthropic-version": "2023-06-01"}
    return Probe("GET", _join(base, "/v1/models"), headers)


# Anthropic: 401 authentication_error; 403 permission_error is a valid key lacking permission.
ANTHROPIC = Provider(
    "anthropic", "https://api.anthropic.com", _anthropic, _statuses((200, 403), (401,))
)

# SendGrid: GET /v3/scopes lists the key's scopes; 401 for a deleted or unknown key.
SENDGRID = Provider(
    "sendgrid", "https://api.sendgrid.com", _bearer("/v3/scopes"), _statuses((200,), (401,))
)


def _twilio(cred: Credential, base: str) -> Probe | None:
    sid = cred.companion
    if sid is None:  # an auth token is checked with its account SID, or not at all
        return None
    basic = base64.b64encode(f"{sid}:{cred.value}".encode()).decode()
    url = _join(base, f"/2010-04-01/Accounts/{sid}.json")
    return Probe("GET", url, {"Authorization": f"Basic {basic}", "Accept": "application/json"})


TWILIO = Provider("twilio", "https://api.twilio.com", _twilio, _statuses((200,), (401,)))

_STS_BODY = b"Action=GetCallerIdentity&Version=2011-06-15"
_AWS_INVALID = ("InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken")


def _aws(cred: Credential, base: str) -> Probe | None:
    """STS GetCallerIdentity, signed with SigV4 by botocore; needs no permission at all."""
    key_id = cred.companion
    if key_id is None or not key_id.startswith("AKIA"):
        # a temporary ASIA key needs its session token, which is not in the artifact
        return None
    url = _join(base, "/")
    request = AWSRequest(
        method="POST",
        url=url,
        data=_STS_BODY,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(key_id, cred.value), "sts", "us-east-1").add_auth(request)
    return Probe("POST", url, dict(request.headers.items()), _STS_BODY)


def _aws_read(status: int, body: Any) -> Verdict:
    if status == 200:
        return Verdict.LIVE
    # the error code is in the XML body; read as text by the caller
    text = body if isinstance(body, str) else ""
    if status == 403 and any(code in text for code in _AWS_INVALID):
        return Verdict.REVOKED
    return Verdict.UNVERIFIED


AWS = Provider("aws", "https://sts.amazonaws.com", _aws, _aws_read)

PROVIDERS: Mapping[str, Provider] = {
    p.name: p
    for p in (GITHUB, GITLAB, NPM, SLACK, STRIPE, OPENAI, ANTHROPIC, SENDGRID, TWILIO, AWS)
}
