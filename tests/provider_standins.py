"""A local aiohttp stand-in for the credential providers' identity endpoints (watcher.verify).

One loopback server answers for every provider under `/<provider>/…`, speaking each one's
documented answers: the identity payload (200) for a credential it knows as live, the provider's
own "invalid credential" answer otherwise (GitHub/GitLab/npm/Stripe/OpenAI/Anthropic/SendGrid/Twilio
401 with their error bodies, Slack 200 `{"ok": false, "error": "invalid_auth"}`, AWS STS 403
`InvalidClientTokenId` / `SignatureDoesNotMatch`). AWS requests are checked for real: the stand-in
recomputes the SigV4 signature with botocore from the secret it knows for the key id.

A fault can be queued per provider: `standin.fault("github", status=429, retry_after="30")`,
`standin.fault("openai", delay=3)` (slower than the client's timeout), `status=503`, or a redirect
(`location=`). Every request is counted per provider in `standin.calls`.

    async with provider_standin() as standin:
        standin.live["github"].add(token)
        base_urls = standin.urls()   # provider -> http://127.0.0.1:<port>/<provider>
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from watcher.verify.model import PROVIDER_NAMES

PROVIDERS = PROVIDER_NAMES  # one list: the verifiers the package ships


@dataclass
class Fault:
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    location: str | None = None


class ProviderStandin:
    def __init__(self) -> None:
        self.live: dict[str, set[str]] = defaultdict(set)
        self.aws_keys: dict[str, str] = {}  # key id -> secret, for the SigV4 check
        self.twilio: dict[str, str] = {}  # account SID -> auth token
        self.calls: Counter[str] = Counter()
        self.seen_headers: list[dict[str, str]] = []
        self._faults: dict[str, Fault] = {}
        self.base = ""

    def fault(self, provider: str, **kwargs: Any) -> None:
        self._faults[provider] = Fault(**kwargs)

    def urls(self) -> dict[str, str]:
        return {name: f"{self.base}/{name}" for name in PROVIDERS}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        provider = request.match_info["provider"]
        self.calls[provider] += 1
        self.seen_headers.append(dict(request.headers))
        fault = self._faults.get(provider)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.location:
                raise web.HTTPFound(fault.location)
            if fault.status != 200:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return web.json_response({"message": "fault"}, status=fault.status, headers=headers)
        answer = getattr(self, f"_{provider}")
        return await answer(request)

    # -- each provider's documented answers --------------------------------------------------

    def _bearer(self, request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    async def _github(self, request: web.Request) -> web.Response:
        if request.method == "GET" and request.path.endswith("/user"):
            if self._bearer(request) in self.live["github"]:
                return web.json_response({"login": "acme-bot", "id": 1, "type": "User"})
            return web.json_response({"message": "Bad credentials", "status": "401"}, status=401)
        return web.json_response({"message": "Not Found"}, status=404)

    async def _gitlab(self, request: web.Request) -> web.Response:
        if request.path.endswith("/api/v4/personal_access_tokens/self"):
            if request.headers.get("PRIVATE-TOKEN", "") in self.live["gitlab"]:
                return web.json_response(
                    {"id": 7, "name": "ci", "revoked": False, "active": True, "scopes": ["api"]}
                )
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        return web.json_response({"message": "404 Not Found"}, status=404)

    async def _npm(self, request: web.Request) -> web.Response:
        if request.path.endswith("/-/whoami") and self._bearer(request) in self.live["npm"]:
            return web.json_response({"username": "acme-publisher"})
        return web.json_response({"error": "Unauthorized"}, status=401)

    async def _slack(self, request: web.Request) -> web.Response:
        if request.method == "POST" and request.path.endswith("/api/auth.test"):
            if self._bearer(request) in self.live["slack"]:
                return web.json_response({"ok": True, "team": "acme", "user": "bot", "url": "x"})
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)

    async def _stripe(self, request: web.Request) -> web.Response:
        if request.path.endswith("/v1/account") and self._bearer(request) in self.live["stripe"]:
            return web.json_response({"id": "acct_1", "object": "account"})
        error = {"type": "invalid_request_error", "message": "Invalid API Key provided"}
        return web.json_response({"error": error}, status=401)

    async def _openai(self, request: web.Request) -> web.Response:
        if request.path.endswith("/v1/models") and self._bearer(request) in self.live["openai"]:
            return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})
        error = {"message": "Incorrect API key provided", "code": "invalid_api_key"}
        return web.json_response({"error": error}, status=401)

    async def _anthropic(self, request: web.Request) -> web.Response:
        if not request.headers.get("anthropic-version"):
            return web.json_response({"type": "error"}, status=400)
        if request.headers.get("x-api-key", "") in self.live["anthropic"]:
            return web.json_response({"data": [{"id": "m", "type": "model"}], "has_more": False})
        error = {"type": "authentication_error", "message": "invalid x-api-key"}
        return web.json_response({"type": "error", "error": error}, status=401)

    async def _sendgrid(self, request: web.Request) -> web.Response:
        if request.path.endswith("/v3/scopes") and self._bearer(request) in self.live["sendgrid"]:
            return web.json_response({"scopes": ["mail.send"]})
        errors = [{"field": None, "message": "authorization required"}]
        return web.json_response({"errors": errors}, status=401)

    async def _twilio(self, request: web.Request) -> web.Response:
        sid = request.path.rsplit("/", 1)[-1].removesuffix(".json")
        auth = request.headers.get("Authorization", "").removeprefix("Basic ")
        user, _, token = base64.b64decode(auth or "Og==").decode().partition(":")
        if user == sid and self.twilio.get(sid) == token:
            return web.json_response({"sid": sid, "status": "active"})
        body = {"code": 20003, "message": "Authenticate", "status": 401}
        return web.json_response(body, status=401)

    async def _aws(self, request: web.Request) -> web.Response:
        body = await request.read()
        auth = request.headers.get("Authorization", "")
        key_id = auth.partition("Credential=")[2].partition("/")[0]
        secret = self.aws_keys.get(key_id)
        if secret is None:
            return _sts_error("InvalidClientTokenId")
        if not _sigv4_matches(request, body, key_id, secret):
            return _sts_error("SignatureDoesNotMatch")
        xml = (
            '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/ci</Arn>"
            "<UserId>AIDA</UserId><Account>123456789012</Account></GetCallerIdentityResult>"
            "</GetCallerIdentityResponse>"
        )
        return web.Response(text=xml, content_type="text/xml")


def _sts_error(code: str) -> web.Response:
    xml = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender'
        f"</Type><Code>{code}</Code><Message>rejected</Message></Error></ErrorResponse>"
    )
    return web.Response(text=xml, status=403, content_type="text/xml")


def _sigv4_matches(request: web.Request, body: bytes, key_id: str, secret: str) -> bool:
    """Recompute the request's SigV4 signature with botocore, from the secret we know."""
    amz_date = request.headers.get("X-Amz-Date", "")
    signed = AWSRequest(
        method=request.method,
        url=str(request.url),
        data=body,
        headers={"Content-Type": request.headers.get("Content-Type", "")},
    )
    signed.context["timestamp"] = amz_date
    signed.headers["X-Amz-Date"] = amz_date
    auth = SigV4Auth(Credentials(key_id, secret), "sts", "us-east-1")
    signature = auth.signature(auth.string_to_sign(signed, auth.canonical_request(signed)), signed)
    return request.headers.get("Authorization", "").endswith(f"Signature={signature}")


@contextlib.asynccontextmanager
async def provider_standin() -> AsyncIterator[ProviderStandin]:
    standin = ProviderStandin()
    app = web.Application()
    app.router.add_route("*", "/{provider}/{tail:.*}", standin.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    standin.base = f"http://127.0.0.1:{port}"
    try:
        yield standin
    finally:
        await runner.cleanup()
