"""A loopback stand-in for GitHub's "Revoke a list of credentials" endpoint.

The contract (docs.github.com REST, credentials/revoke): `POST /credentials/revoke` (GitHub
Enterprise Server: `/api/v3/credentials/revoke`), JSON `{"credentials": [...]}` with 1 to 1,000
tokens of the accepted kinds (`ghp_`, `github_pat_`, `gho_`, `ghu_`, `ghr_`); on github.com
unauthenticated (an authenticated request gets 403), on GHES authenticated; `202 Accepted`;
`422 Validation Failed` for a malformed body or when the endpoint is being spammed; a primary rate
limit of `per_hour` requests (then `403` with `x-ratelimit-remaining: 0` and `x-ratelimit-reset`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

TOKEN = re.compile(r"^(?:gh[pour]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})$")


@dataclass
class GitHubStandin:
    url: str = ""
    per_hour: int = 60
    reset_in: float = 3600.0  # seconds from a refusal to the rate limit's reset
    spammed: bool = False  # GitHub's 422 for an endpoint it sees spammed
    enterprise_token: str | None = None  # set: GHES (authenticated, under /api/v3)
    requests: list[dict[str, object]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)

    def _refuse(self, status: int, message: str, **headers: str) -> web.Response:
        body = {"message": message, "documentation_url": "https://docs.github.com/rest"}
        return web.json_response(body, status=status, headers=headers)

    async def handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.requests.append({"path": request.path, "authorized": auth is not None})
        if len(self.requests) > self.per_hour:
            reset = str(int(time.time() + self.reset_in))
            return self._refuse(
                403,
                "API rate limit exceeded",
                **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
            )
        if self.enterprise_token is None and auth is not None:
            return self._refuse(403, "This endpoint does not accept authenticated requests")
        if self.enterprise_token is not None and auth != f"Bearer {self.enterprise_token}":
            return self._refuse(401, "Requires authentication")
        try:
            doc = json.loads(await request.read())
        except ValueError:
            return self._refuse(400, "Problems parsing JSON")
        credentials = doc.get("credentials") if isinstance(doc, dict) else None
        if (
            not isinstance(credentials, list)
            or not 1 <= len(credentials) <= 1000
            or not all(isinstance(c, str) and TOKEN.match(c) for c in credentials)
        ):
            return self._refuse(422, "Validation Failed")
        if self.spammed:
            return self._refuse(422, "Validation Failed: the endpoint is being spammed")
        self.accepted.extend(credentials)
        return web.json_response({}, status=202)


@asynccontextmanager
async def github_standin(**settings: object) -> AsyncIterator[GitHubStandin]:
    standin = GitHubStandin(**settings)  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_post("/credentials/revoke", standin.handle)
    app.router.add_post("/api/v3/credentials/revoke", standin.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    standin.url = base + ("/api/v3" if standin.enterprise_token else "")
    try:
        yield standin
    finally:
        await runner.cleanup()
