"""The approvals API: the team's pre-publish gate records that it passed an exact artifact.

`POST /api/v1/approvals` and `GET /api/v1/approvals?name=…` answer only to a bearer token of
`server.api_tokens` (401 otherwise); a token limited to owners or package names gets 403 outside
them. Tokens are kept as SHA-256 digests and compared with `hmac.compare_digest` against every
configured one, so neither the token nor its position shows in logs or timing. `GET
/api/v1/openapi.json` describes it (no token needed). The routes are installed on the service's
port, or on `server.api_listen` (see the daemon); put TLS in front (docs/operations.md).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web

from watcher import ecosystems, metrics
from watcher.config import Config
from watcher.config.schema import ApiTokenConfig, normalize_name
from watcher.incidents.lifecycle import IncidentLifecycle
from watcher.model import Ecosystem
from watcher.store.api import Store
from watcher.store.types import Approval, NewApproval
from watcher.timefmt import iso

log = structlog.get_logger(__name__)

APPROVALS_PATH = "/api/v1/approvals"
OPENAPI_PATH = "/api/v1/openapi.json"
MAX_BODY = 4 * 1024 * 1024  # a gate's report of a large package fits; more is refused (413)
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_SRI = re.compile(r"sha(256|384|512)-[A-Za-z0-9+/]+={0,2}")
_FIELDS = {"ecosystem", "name", "version", "sha256", "integrity", "report"}
_MAX_VERSION = 256


# ------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A configured token as the service keeps it: its name, the SHA-256 of its value, and its
    limits (None: no limit of that kind)."""

    name: str
    digest: bytes
    owners: tuple[str, ...] | None = None
    packages: tuple[str, ...] | None = None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenRing:
    """Who a request's `Authorization: Bearer <token>` is."""

    def __init__(self, tokens: Sequence[ApiTokenConfig]) -> None:
        self._tokens = tuple(
            ApiToken(t.name, _digest(t.token.get_secret_value()), t.owners, t.packages)
            for t in tokens
        )

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def authenticate(self, header: str | None) -> ApiToken | None:
        scheme, _, value = (header or "").strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return None
        presented = _digest(value)
        found = None
        for token in self._tokens:  # every one compared: no early exit to time
            if hmac.compare_digest(token.digest, presented):
                found = token
        return found


def outside_limits(token: ApiToken, config: Config, ecosystem: Ecosystem, name: str) -> str | None:
    """Why `token` may not approve (or list) this package; None when it may. Both limits apply
    when both are set."""
    if token.owners is not None:
        owner = config.owner_of(ecosystem, name)
        if owner not in token.owners:
            whose = f"owned by {owner}" if owner else "not a watched package"
            return (
                f"token {token.name!r} is limited to owners {', '.join(token.owners)}; "
                f"{ecosystem.value}:{name} is {whose}"
            )
    if token.packages is not None:
        canonical = normalize_name(ecosystem, name)
        if not any(
            fnmatch.fnmatchcase(canonical, normalize_name(ecosystem, pattern))
            for pattern in token.packages
        ):
            return (
                f"token {token.name!r} is limited to packages {', '.join(token.packages)}; "
                f"{ecosystem.value}:{name} is not one of them"
            )
    return None


# --------------------------------------------------------------------------------------- body


class BadRequest(ValueError):
    """A body or query the API cannot take; the message says what is wrong (400)."""


def parse_approval(body: object, token_name: str) -> NewApproval:
    """The JSON body → a NewApproval (name in its ecosystem's canonical form, sha256 lowercase);
    BadRequest naming the field otherwise."""
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object with ecosystem, name, version and sha256")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(_FIELDS))}"
        )
    missing = [k for k in ("ecosystem", "name", "version", "sha256") if k not in body]
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(missing)}")
    ecosystem = _ecosystem(body["ecosystem"])
    name = body["name"]
    if not isinstance(name, str) or not name:
        raise BadRequest("name: expected a package name")
    problem = ecosystems.get(ecosystem).check_name(name)
    if problem is not None or any(c in name for c in "*?"):
        raise BadRequest(f"name: {problem or 'expected a package name, not a pattern'}")
    version = body["version"]
    if (
        not isinstance(version, str)
        or not version
        or len(version) > _MAX_VERSION
        or any(c.isspace() for c in version)
    ):
        raise BadRequest("version: expected a version string such as 1.2.3")
    sha256 = body["sha256"]
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise BadRequest("sha256: expected the artifact's SHA-256 as 64 hex digits")
    integrity = body.get("integrity")
    if integrity is not None and (not isinstance(integrity, str) or not _SRI.fullmatch(integrity)):
        raise BadRequest("integrity: expected a Subresource Integrity value such as sha512-…")
    report = body.get("report")
    if report is not None and not isinstance(report, dict):
        raise BadRequest("report: expected the gate's JSON report (an object)")
    return NewApproval(
        ecosystem=ecosystem,
        name=normalize_name(ecosystem, name),
        version=version,
        sha256=sha256.lower(),
        token_name=token_name,
        integrity=integrity,
        report=report,
    )


def _ecosystem(value: object) -> Ecosystem:
    names = [n.value for n in ecosystems.names()]
    if not isinstance(value, str) or value not in names:
        raise BadRequest(f"ecosystem: expected one of {', '.join(names)}")
    return Ecosystem(value)


def approval_json(approval: Approval) -> dict[str, Any]:
    """The API's approval object (the gate's report is kept, not echoed)."""
    return {
        "id": approval.id,
        "ecosystem": approval.ecosystem.value,
        "name": approval.name,
        "version": approval.version,
        "sha256": approval.sha256,
        "integrity": approval.integrity,
        "token_name": approval.token_name,
        "created_at": iso(approval.created_at),
    }


# ------------------------------------------------------------------------------------ handlers


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


class ApprovalsApi:
    """The handlers over the store; `install(app)` adds the routes."""

    def __init__(
        self, store: Store, config: Config, *, lifecycle: IncidentLifecycle | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.tokens = TokenRing(config.server.api_tokens)
        # with it, an approval of a release already paged as unapproved resolves or updates it
        self.lifecycle = lifecycle

    def install(self, app: web.Application) -> None:
        app.router.add_post(APPROVALS_PATH, self.post)
        app.router.add_get(APPROVALS_PATH, self.list)
        app.router.add_get(OPENAPI_PATH, self.openapi)

    def _caller(self, request: web.Request) -> ApiToken | None:
        token = self.tokens.authenticate(request.headers.get("Authorization"))
        if token is None:
            log.warning(
                "api_unauthorized",
                path=request.path,
                method=request.method,
                remote=request.remote,
                bearer=bool(request.headers.get("Authorization")),
            )
        return token

    @staticmethod
    def _unauthorized() -> web.Response:
        return _error(
            401,
            "a valid API token is required (Authorization: Bearer <token>)",
            **{"WWW-Authenticate": 'Bearer realm="registry-watcher"'},
        )

    async def post(self, request: web.Request) -> web.Response:
        token = self._caller(request)
        if token is None:
            metrics.APPROVALS.labels("unauthorized").inc()
            return self._unauthorized()
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            metrics.APPROVALS.labels("invalid").inc()
            return _error(413, f"the body is larger than {MAX_BODY} bytes")
        try:
            approval = parse_approval(orjson.loads(raw), token.name)
        except orjson.JSONDecodeError as exc:
            metrics.APPROVALS.labels("invalid").inc()
            return _error(400, f"expected a JSON body: {exc}")
        except BadRequest as exc:
            metrics.APPROVALS.labels("invalid").inc()
            return _error(400, str(exc))
        refused = outside_limits(token, self.config, approval.ecosystem, approval.name)
        if refused is not None:
            log.warning(
                "approval_refused",
                token_name=token.name,
                ecosystem=approval.ecosystem.value,
                package=approval.name,
                version=approval.version,
                reason=refused,
            )
            metrics.APPROVALS.labels("refused").inc()
            return _error(403, refused)
        stored, created = await self.store.add_approval(approval)
        metrics.APPROVALS.labels("recorded" if created else "repeated").inc()
        log.info(
            "approval_recorded" if created else "approval_repeated",
            token_name=token.name,
            ecosystem=stored.ecosystem.value,
            package=stored.name,
            version=stored.version,
            sha256=stored.sha256,
            approval_id=stored.id,
        )
        if created and self.lifecycle is not None:
            try:
                done = await self.lifecycle.approval_arrived(stored)
            except Exception as exc:  # the approval is recorded; the incident is told later
                log.warning("approval_incident_failed", error=f"{type(exc).__name__}: {exc}")
            else:
                if done is not None:
                    log.info("approval_after_page", approval_id=stored.id, incident=done)
        return web.json_response(approval_json(stored), status=201 if created else 200)

    async def list(self, request: web.Request) -> web.Response:
        token = self._caller(request)
        if token is None:
            return self._unauthorized()
        name = request.query.get("name", "")
        if not name:
            return _error(400, "name: the package name is required (?name=…)")
        version = request.query.get("version") or None
        try:
            wanted = (
                [_ecosystem(request.query["ecosystem"])]
                if "ecosystem" in request.query
                else list(ecosystems.names())
            )
        except BadRequest as exc:
            return _error(400, str(exc))
        found: list[Approval] = []
        refusals: list[str] = []
        allowed = 0
        for eco in wanted:
            if ecosystems.get(eco).check_name(name) is not None:
                continue
            refused = outside_limits(token, self.config, eco, name)
            if refused is not None:
                refusals.append(refused)
                continue
            allowed += 1
            found += await self.store.approvals(eco, normalize_name(eco, name), version)
        if refusals and not allowed:  # nothing this token may see under that name
            return _error(403, refusals[0])
        return web.json_response([approval_json(a) for a in found])

    async def openapi(self, _: web.Request) -> web.Response:
        return web.json_response(openapi_document())


def api_app(api: ApprovalsApi) -> web.Application:
    """An application serving only the API (`server.api_listen`)."""
    app = web.Application(client_max_size=MAX_BODY)
    api.install(app)
    return app


# ------------------------------------------------------------------------------------- OpenAPI

_APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "ecosystem",
        "name",
        "version",
        "sha256",
        "integrity",
        "token_name",
        "created_at",
    ],
    "properties": {
        "id": {"type": "integer"},
        "ecosystem": {"type": "string", "example": "npm"},
        "name": {"type": "string", "description": "as the ecosystem compares it (PyPI normalised)"},
        "version": {"type": "string"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "integrity": {"type": ["string", "null"], "description": "npm Subresource Integrity"},
        "token_name": {"type": "string", "description": "the API token that posted it"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 description of the approvals API."""
    error = {"$ref": "#/components/schemas/Error"}

    def answer(text: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": schema}}}

    approval = {"$ref": "#/components/schemas/Approval"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "registry-watcher approvals API",
            "version": "1",
            "description": (
                "The team's pre-publish gate records the exact artifacts it passed; the watcher "
                "pages `release-unapproved` for a release of a package with "
                "`expect.approval: true` whose artifact no approval matches. Serve it behind TLS."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Approval": _APPROVAL_SCHEMA,
                "NewApproval": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["ecosystem", "name", "version", "sha256"],
                    "properties": {
                        "ecosystem": {"type": "string", "example": "npm"},
                        "name": {"type": "string", "example": "@acme/sdk"},
                        "version": {"type": "string", "example": "1.4.0"},
                        "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                        "integrity": {
                            "type": "string",
                            "description": "npm `dist.integrity`, e.g. from `npm pack --json`",
                        },
                        "report": {"type": "object", "description": "the gate's JSON report"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            APPROVALS_PATH: {
                "post": {
                    "summary": "Record that the gate passed this exact artifact",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/NewApproval"}
                            }
                        },
                    },
                    "responses": {
                        "201": answer("recorded", approval),
                        "200": answer("already recorded (a retry): the stored one", approval),
                        "400": answer("the body is not a valid approval", error),
                        "401": answer("no valid API token", error),
                        "403": answer("the token is limited to other owners or packages", error),
                        "413": answer("the body is too large", error),
                    },
                },
                "get": {
                    "summary": "The approvals of a package",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {"name": "ecosystem", "in": "query", "schema": {"type": "string"}},
                        {"name": "version", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": answer("oldest first", {"type": "array", "items": approval}),
                        "400": answer("no name, or an unknown ecosystem", error),
                        "401": answer("no valid API token", error),
                        "403": answer("the token is limited to other owners or packages", error),
                    },
                },
            },
            OPENAPI_PATH: {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
    }
