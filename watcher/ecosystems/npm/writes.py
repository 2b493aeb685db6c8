"""npm registry writes for automatic containment, made as the npm CLI makes them.

- dist-tag: `PUT <registry>/-/package/<escaped name>/dist-tags/<tag>` with the version as a JSON
  string (`npm dist-tag add`);
- deprecate: `GET <registry>/<escaped name>?write=true`, set `versions[v].deprecated`, `PUT` the
  document back to `<registry>/<escaped name>` (`npm deprecate`; an empty message undeprecates).

Each goes to the package's own registry (its scope's, else the default) with that registry's
write token (`containment.auto.npm.scope_tokens` / `token`). Every write first reads the packument
and does nothing when the registry already shows the change, so a job resumed after a crash never
changes a thing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from watcher.ecosystems.actions import ActionResult
from watcher.ecosystems.http import safe_url
from watcher.ecosystems.npm.client import escape_name
from watcher.ecosystems.npm.settings import package_scope
from watcher.store.types import ContainmentJob

TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


class _Failure(Exception):
    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    @property
    def transient(self) -> bool:
        return self.status is None or self.status in TRANSIENT


def _why(status: int, body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        doc = orjson.loads(body)
        if isinstance(doc, dict):
            text = str(doc.get("error") or doc.get("reason") or doc.get("message") or text)
    except orjson.JSONDecodeError:
        pass
    text = " ".join(text.split())[:160]
    hint = ""
    if status == 401 and "otp" in text.lower():
        hint = " (the registry wants a one-time password: use a granular token that bypasses 2FA)"
    elif status in (401, 403):
        hint = " (the token has no write access to this package)"
    return f"HTTP {status}: {text}{hint}"


class NpmActions:
    """`ContainmentActions` for npm. `registry_for(name)` is the read client's registry choice."""

    def __init__(
        self,
        default_registry: str,
        scope_registries: Mapping[str, str],
        token: str | None,
        scope_tokens: Mapping[str, str],
        *,
        timeout: float = 10.0,
    ) -> None:
        self.default_registry = default_registry.rstrip("/") + "/"
        self.scope_registries = {s: u.rstrip("/") + "/" for s, u in scope_registries.items()}
        self._token = token
        self._scope_tokens = dict(scope_tokens)
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:  # never the tokens
        return f"NpmActions({safe_url(self.default_registry)!r})"

    def _registry(self, name: str) -> tuple[str, str | None]:
        scope = package_scope(name)
        if scope and scope in self.scope_registries:
            return self.scope_registries[scope], self._scope_tokens.get(scope)
        return self.default_registry, self._token

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, url: str, token: str | None, body: Any = None) -> Any:
        headers = {"Accept": "application/json", "npm-command": "registry-watcher"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(method, url, data=data, headers=headers) as response:
                raw = await response.read()
                if not 200 <= response.status < 300:
                    raise _Failure(response.status, _why(response.status, raw))
                return orjson.loads(raw) if raw.strip() else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Failure(None, f"{type(exc).__name__} talking to {safe_url(url)}") from exc
        except orjson.JSONDecodeError as exc:
            raise _Failure(
                None, f"the registry answered a document that is not JSON ({exc})"
            ) from None

    async def _packument(self, name: str) -> tuple[str, str | None, dict[str, Any]]:
        registry, token = self._registry(name)
        url = registry + escape_name(name)
        doc = await self._call("GET", url + "?write=true", token)
        if not isinstance(doc, dict):
            raise _Failure(None, "the packument is not a JSON object")
        return url, token, doc

    async def perform(self, job: ContainmentJob) -> ActionResult:
        manual = job.params.get("manual")
        try:
            if job.action in ("dist_tag", "undo_dist_tag"):
                detail = await self._dist_tag(job)
            elif job.action in ("deprecate", "undo_deprecate"):
                detail = await self._deprecate(job)
            else:
                return ActionResult(False, f"npm: no such action {job.action!r}", manual=manual)
        except _Failure as exc:
            return ActionResult(False, exc.detail, retry=exc.transient, manual=manual)
        return ActionResult(True, detail)

    async def _dist_tag(self, job: ContainmentJob) -> str:
        tag, want, was = job.target, job.params["to"], job.params.get("from")
        _, token, doc = await self._packument(job.name)
        tags = doc.get("dist-tags") if isinstance(doc.get("dist-tags"), dict) else {}
        current = tags.get(tag) if isinstance(tags, dict) else None
        if current == want:
            return f"{tag} already on {want}"
        if was is not None and current != was:
            # someone (a person, a later publish) moved it since: theirs wins
            return f"{tag} left as it is ({current or 'removed'}; it no longer points at {was})"
        registry, _ = self._registry(job.name)
        await self._call(
            "PUT", f"{registry}-/package/{escape_name(job.name)}/dist-tags/{tag}", token, want
        )
        return f"{tag} {was} → {want}" if was else f"{tag} → {want}"

    async def _deprecate(self, job: ContainmentJob) -> str:
        version, message = job.target, job.params.get("message", "")
        url, token, doc = await self._packument(job.name)
        versions = doc.get("versions")
        info = versions.get(version) if isinstance(versions, dict) else None
        if not isinstance(info, dict):
            return f"{version} is no longer listed: nothing to deprecate"
        if (info.get("deprecated") or "") == message:
            return f"{version} already {'deprecated' if message else 'not deprecated'}"
        if message:
            info["deprecated"] = message
        else:
            info.pop("deprecated", None)
            info["deprecated"] = ""  # npm CLI sends "" to undeprecate
        await self._call("PUT", url, token, doc)
        return f"{version} deprecated" if message else f"{version} deprecation removed"
