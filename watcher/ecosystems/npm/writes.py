"""npm registry writes for automatic containment, made as the npm CLI makes them.

- dist-tag: `PUT <registry>/-/package/<escaped name>/dist-tags/<tag>` with the version as a JSON
  string (`npm dist-tag add`);
- deprecate: `GET <registry>/<escaped name>?write=true`, set `versions[v].deprecated`, `PUT` the
  document back to `<registry>/<escaped name>` (`npm deprecate`; an empty message undeprecates);
- unpublish one version (libnpmpublish's `unpublish`): `GET …?write=true`, `PUT
  <registry>/<escaped name>/-rev/<_rev>` with the packument minus the version and the dist-tags on
  it (without `_revisions`/`_attachments`), `GET …?write=true` again for the new `_rev`, then
  `DELETE <registry>/<tarball path>/-rev/<_rev>`. The last remaining version is never unpublished
  (that removes the package; npm's CLI wants `--force`); `latest` on the version goes to the
  job's good version (npm's CLI takes the highest remaining one, which can be a pre-release).
  A job resumed after a crash between the two writes finds the version gone and deletes the
  tarball (recorded in the job at plan time); a 404 for it means it is gone already.

Each goes to the package's own registry (its scope's, else the default) with that registry's
write token (`containment.auto.npm.scope_tokens` / `token`). Every write first reads the packument
and does nothing when the registry already shows the change, so a job resumed after a crash never
changes a thing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from watcher.ecosystems.actions import ActionResult
from watcher.ecosystems.http import safe_url
from watcher.ecosystems.npm.client import escape_name
from watcher.ecosystems.npm.settings import package_scope
from watcher.ecosystems.versions import version_key
from watcher.model import Ecosystem
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


def _why(status: int, body: bytes, authenticate: str = "") -> str:
    text = body.decode("utf-8", "replace")
    try:
        doc = orjson.loads(body)
        if isinstance(doc, dict):
            text = str(doc.get("error") or doc.get("reason") or doc.get("message") or text)
    except orjson.JSONDecodeError:
        pass
    text = " ".join(text.split())[:160]
    hint = ""
    # as the npm CLI tells (npm-registry-fetch's check-response): `WWW-Authenticate: OTP`, or a
    # body saying "one-time pass" without that header
    challenges = [c.strip().lower() for c in authenticate.split(",")]
    if status == 401 and ("otp" in challenges or "one-time pass" in text.lower()):
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
                    why = _why(response.status, raw, response.headers.get("WWW-Authenticate", ""))
                    raise _Failure(response.status, why)
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
            elif job.action == "unpublish":
                detail = await self._unpublish(job)
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

    async def _unpublish(self, job: ContainmentJob) -> str:
        version = job.target
        url, token, doc = await self._packument(job.name)
        versions = doc.get("versions") if isinstance(doc.get("versions"), dict) else {}
        assert isinstance(versions, dict)
        info = versions.get(version)
        tarball = job.params.get("tarball")
        if not isinstance(info, dict):
            if tarball:  # the packument write went through before a crash: the file too
                await self._delete_tarball(job.name, url, token, tarball)
            return f"{version} unpublished"
        if len(versions) == 1:
            raise _Failure(
                409,
                f"{version} is the only version: unpublishing it removes the package "
                "(npm blocks the name for 24 h); not done automatically",
            )
        dist = info.get("dist") if isinstance(info.get("dist"), dict) else {}
        assert isinstance(dist, dict)
        tarball = str(dist.get("tarball") or tarball or "")
        del versions[version]
        tags = doc.get("dist-tags") if isinstance(doc.get("dist-tags"), dict) else {}
        assert isinstance(tags, dict)
        was_latest = tags.get("latest") == version
        for tag in [t for t, v in tags.items() if v == version]:
            del tags[tag]
        if was_latest:
            good = job.params.get("good")
            tags["latest"] = good if good in versions else _highest(versions)
        doc["dist-tags"] = tags
        doc.pop("_revisions", None)
        doc.pop("_attachments", None)
        rev = doc.get("_rev")
        if not isinstance(rev, str) or not rev:
            raise _Failure(None, "the packument has no _rev: cannot unpublish")
        await self._call("PUT", f"{url}/-rev/{rev}", token, doc)
        if tarball:
            await self._delete_tarball(job.name, url, token, tarball)
        return f"{version} unpublished"

    async def _delete_tarball(self, name: str, url: str, token: str | None, tarball: str) -> None:
        again = await self._call("GET", url + "?write=true", token)
        rev = again.get("_rev") if isinstance(again, dict) else None
        if not isinstance(rev, str) or not rev:
            raise _Failure(None, "the packument has no _rev: cannot delete the tarball")
        registry, _ = self._registry(name)
        path = _tarball_path(tarball, registry)
        try:
            await self._call("DELETE", f"{registry}{path}/-rev/{rev}", token)
        except _Failure as exc:
            if exc.status not in (404, 410):  # already gone: what was wanted
                raise


def _tarball_path(tarball: str, registry: str) -> str:
    """The tarball URL's path after the registry's own path (libnpmpublish's `getPathname`)."""
    path = urlsplit(tarball).path.lstrip("/")
    prefix = urlsplit(registry).path.strip("/")
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix) + 1 :]
    return path


def _highest(versions: Mapping[str, Any]) -> str:
    keyed = [(k, v) for v in versions if (k := version_key(Ecosystem.NPM, v)) is not None]
    return max(keyed)[1] if keyed else sorted(versions)[-1]


def actions_for(
    auto: Any, default_registry: str, scope_registries: Mapping[str, str]
) -> NpmActions:
    """The writes with the write tokens of `auto` (the `containment.auto` section; None: no
    tokens, a write then goes without one)."""
    token = auto.npm.token if auto is not None else None
    scopes = auto.npm.scope_tokens if auto is not None else {}
    return NpmActions(
        default_registry,
        scope_registries,
        token.get_secret_value() if token else None,
        {s: t.get_secret_value() for s, t in scopes.items()},
    )
