"""npm's own settings, read as npm reads them: environment, then the project, user, global and
built-in .npmrc files, then the npm CLI's answer; `url: null` in the configuration means this.
npm also routes by scope: `@acme:registry=<url>` sends every `@acme/*` package to that registry,
and credentials are keyed per registry path (`//host[:port]/path/:_authToken=`, the nerf dart), so
a private scope's token only ever goes to its own registry. No registry host is spelled out here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from watcher.ecosystems.config_sources import Credential, ResolvedRegistry
from watcher.ecosystems.config_sources import with_slash as _with_slash
from watcher.errors import ConfigError

log = structlog.get_logger(__name__)

# npm's envReplace: `${NAME}`, `${NAME?}` (empty when unset), backslashes escape the `$`.
_NPM_VAR = re.compile(r"(?<!\\)(\\*)\$\{([^${}?]+)(\?)?\}")
_UNEXPANDED = re.compile(r"\$\{([^${}?]+)\}")
_SCOPE = re.compile(r"@[a-z0-9][a-z0-9._~-]*", re.IGNORECASE)


def npm_env_replace(text: str, env: Mapping[str, str]) -> str:
    """`${NAME}` as npm expands it: unset stays literal (npm sends it as is), `${NAME?}` is empty
    when unset, an odd run of backslashes before `$` escapes it."""

    def replace(match: re.Match[str]) -> str:
        escapes, name, optional = match.group(1), match.group(2), match.group(3)
        if len(escapes) % 2:
            return match.group(0)[(len(escapes) + 1) // 2 :]
        value = env.get(name)
        if value is None:
            value = "" if optional else "${" + name + "}"
        return escapes[len(escapes) // 2 :] + value

    return _NPM_VAR.sub(replace, text)


def _ini_value(raw: str) -> str:
    """The `ini` package's reading of one value: quoted values as JSON (single quotes stripped),
    otherwise up to the first unescaped `;` or `#`, trimmed."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        if value[0] == "'":
            return value[1:-1]
        try:
            decoded = json.loads(value)
        except ValueError:
            return value[1:-1]
        return decoded if isinstance(decoded, str) else value[1:-1]
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            out.append(ch if ch in "\\;#" else "\\" + ch)
            escaped = False
        elif ch in ";#":
            break
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    if escaped:
        out.append("\\")
    return "".join(out).strip()


def parse_npmrc(text: str, env: Mapping[str, str]) -> dict[str, str]:
    """npm's ini subset: top-level `key=value` lines, `;`/`#` comments (also after an unquoted
    value), quoted values, `${VAR}` expansion in keys and values as npm does. Sections and
    `key[]` arrays are skipped: npm's own settings never use them."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            break  # keys after a section header belong to that section, not to npm
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = _ini_value(key)
        if not key or key.endswith("[]"):
            continue
        values[npm_env_replace(key, env)] = npm_env_replace(_ini_value(value), env)
    return values


def _project_dir(cwd: Path) -> Path:
    """npm's local prefix: the nearest directory holding package.json or node_modules."""
    for directory in (cwd, *cwd.parents):
        if (directory / "package.json").exists() or (directory / "node_modules").is_dir():
            return directory
    return cwd


def _npm_prefix(env: Mapping[str, str]) -> Path | None:
    if prefix := _env_lookup(env, "prefix"):
        return Path(prefix)
    node = shutil.which("node", path=env.get("PATH"))
    return Path(node).resolve().parent.parent if node else None


def npmrc_files(env: Mapping[str, str], cwd: Path, home: Path) -> list[Path]:
    """The npmrc files npm reads, highest precedence first (project, user, global)."""
    files = [_project_dir(cwd) / ".npmrc"]
    # npm reads NPM_CONFIG_USERCONFIG as npm_config_userconfig (any case): the token too
    userconfig = _env_lookup(env, "userconfig")
    files.append(Path(userconfig) if userconfig else home / ".npmrc")
    if globalconfig := _env_lookup(env, "globalconfig"):
        files.append(Path(globalconfig))
    else:
        prefix = _npm_prefix(env)
        if prefix is not None:
            files.append(prefix / "etc" / "npmrc")
        files.append(Path("/etc/npmrc"))
    return files


def _env_lookup(env: Mapping[str, str], name: str) -> str | None:
    """npm reads `npm_config_*` variables case-insensitively."""
    wanted = f"npm_config_{name}".lower()
    for key, value in env.items():
        if key.lower() == wanted and value:
            return value
    return None


def nerf_dart(url: str) -> str:
    """npm's key for per-registry credentials: `//host[:port]/path/`."""
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return f"//{parts.netloc}{path}"


def _npm_cli_registry(env: Mapping[str, str], cwd: str | None = None) -> str | None:
    npm = shutil.which("npm", path=env.get("PATH"))
    if npm is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [npm, "config", "get", "registry"],
            capture_output=True,
            text=True,
            timeout=20,
            env=dict(env),
            check=False,
            cwd=cwd,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value.startswith(("http://", "https://")) else None


@functools.cache
def npm_builtin_registry() -> str | None:
    """The registry npm uses when nothing configures one (its public default), asked of the
    machine's npm with every setting set aside: no address is written down here. None without
    npm. Asked once per process."""
    with tempfile.TemporaryDirectory(prefix="watcher-npm-default-") as empty:
        user, top = Path(empty, "user"), Path(empty, "global")
        user.write_text("")
        top.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_")}
        env.update(HOME=empty, npm_config_userconfig=str(user), npm_config_globalconfig=str(top))
        return _npm_cli_registry(env, cwd=empty)


def is_public_npm_registry(url: str) -> bool | None:
    """True when `url` is npm's own default registry; None when npm cannot say."""
    builtin = npm_builtin_registry()
    if builtin is None:
        return None
    return _with_slash(url).lower() == _with_slash(builtin).lower()


def package_scope(name: str) -> str | None:
    """`@acme/cli` → `@acme`; None for an unscoped name."""
    if name.startswith("@") and "/" in name:
        return name.split("/", 1)[0]
    return None


def is_scope(text: str) -> bool:
    return _SCOPE.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class NpmScopeSetting:
    """One scope's registry as the configuration names it; `token` None: the machine's
    credential for that registry, if it has one."""

    url: str
    token: str | None = field(default=None, repr=False)


def _walk_up(url: str) -> list[str]:
    """npm's credential lookup order for a URL: its nerf dart, then each shorter prefix
    (`//h/a/b/`, `//h/a/b`, `//h/a/`, `//h/a`, `//h/`, `//h`)."""
    key = nerf_dart(url)
    keys = []
    while len(key) > 2:
        keys.append(key)
        key = re.sub(r"(?:[^/]+|/)$", "", key)
    return keys


@dataclass(frozen=True, slots=True)
class NpmSettings:
    """The machine's npm settings: the npmrc files merged (project over user over global) and the
    `npm_config_*` environment, which npm ranks above every file."""

    values: Mapping[str, str] = field(repr=False)
    origin: Mapping[str, str]  # key -> the file it came from
    env: Mapping[str, str] = field(repr=False)

    @classmethod
    def read(cls, env: Mapping[str, str], cwd: Path, home: Path) -> NpmSettings:
        merged: dict[str, str] = {}
        origin: dict[str, str] = {}
        # Lowest precedence first so that higher ones overwrite.
        for path in reversed(npmrc_files(env, cwd, home)):
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue
            for key, value in parse_npmrc(text, env).items():
                merged[key] = value
                origin[key] = str(path)
        return cls(merged, origin, env)

    def _get(self, key: str) -> tuple[str, str] | None:
        """(value, where) for a setting: the environment first, then the files."""
        if from_env := _env_lookup(self.env, key):
            return from_env, f"npm_config_{key}"
        if self.values.get(key):
            return self.values[key], self.origin[key]
        return None

    def registry(self) -> tuple[str, str] | None:
        found = self._get("registry")
        if found is not None:
            _require_expanded(found[0], "registry", found[1])
        return found

    def scope_registries(self) -> dict[str, tuple[str, str]]:
        """`@scope` → (registry URL, where it was set), for every `@scope:registry` setting."""
        scopes = {k.removesuffix(":registry") for k in self.values if k.endswith(":registry")}
        for key in self.env:
            match = re.fullmatch(r"npm_config_(@[^:]+):registry", key, re.IGNORECASE)
            if match:
                scopes.add(match.group(1).lower())
        found: dict[str, tuple[str, str]] = {}
        for scope in sorted(scopes):
            if not is_scope(scope):
                continue
            setting = self._get(f"{scope}:registry")
            if setting is not None:
                _require_expanded(setting[0], f"{scope}:registry", setting[1])
                found[scope] = (_with_slash(setting[0]), setting[1])
        return found

    def credential_for(self, url: str) -> Credential | None:
        """The credential npm would send to `url`: the longest `//host/path/` key above it holding
        `_authToken`, `_auth`, or `username` + `_password`."""
        for key in _walk_up(url):
            cred = self._credential_at(key)
            if cred is not None:
                return cred
        return None

    def _credential_at(self, key: str) -> Credential | None:
        token = self._usable(f"{key}:_authToken")
        if token:
            return Credential(key, "Bearer", token, f"{self.origin[f'{key}:_authToken']} {key}")
        auth = self._usable(f"{key}:_auth")
        if auth:
            return Credential(key, "Basic", auth, f"{self.origin[f'{key}:_auth']} {key}")
        user, password = self._usable(f"{key}:username"), self._usable(f"{key}:_password")
        if user and password:
            try:
                clear = base64.b64decode(password, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                log.warning("npm_credential_unusable", key=f"{key}:_password", reason="not base64")
                return None
            basic = base64.b64encode(f"{user}:{clear}".encode()).decode()
            return Credential(key, "Basic", basic, f"{self.origin[f'{key}:_password']} {key}")
        return None

    def _usable(self, key: str) -> str | None:
        value = self.values.get(key)
        if not value:
            return None
        missing = _UNEXPANDED.search(value)
        if missing:
            # npm would send the placeholder itself; it can only fail, so say why instead
            log.warning(
                "npm_credential_unexpanded",
                key=key,
                variable=missing.group(1),
                file=self.origin.get(key),
            )
            return None
        return value


def _require_expanded(value: str, key: str, where: str) -> None:
    missing = _UNEXPANDED.search(value)
    if missing:
        raise ConfigError(
            f"{where}: `{key}` refers to ${{{missing.group(1)}}}, which is not set in the "
            "environment"
        )


@dataclass(frozen=True, slots=True)
class NpmRegistries:
    """Where each npm package lives: its scope's registry, else the default one."""

    default: ResolvedRegistry
    scopes: Mapping[str, ResolvedRegistry] = field(default_factory=dict)

    def for_package(self, name: str) -> ResolvedRegistry:
        scope = package_scope(name)
        return self.scopes.get(scope, self.default) if scope else self.default

    def scope_urls(self) -> dict[str, str]:
        return {scope: reg.url for scope, reg in self.scopes.items()}

    def off_default(self) -> dict[str, ResolvedRegistry]:
        """Scopes served by another registry than the default one (not on its changes feed)."""
        return {s: r for s, r in self.scopes.items() if r.url != self.default.url}

    def credentials(self) -> dict[str, str]:
        """The HTTP layer's table: `host[:port]/path/` → Authorization header value."""
        table: dict[str, str] = {}
        for reg in (self.default, *self.scopes.values()):
            if reg.credential is not None:
                table[reg.credential.http_key] = reg.credential.header
        return table


def resolve_npm_registries(
    configured: str | None = None,
    scopes: Mapping[str, NpmScopeSetting] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    home: Path | None = None,
    ask_npm: bool = True,
) -> NpmRegistries:
    """The default npm registry (config, else the machine's setting) and every scope's: the
    configured `scopes` first, then the machine's `@scope:registry` settings; each with the
    credential npm would send to it. Raises ConfigError where two registries would need different
    credentials for the same URL."""
    env = os.environ if env is None else env
    settings = NpmSettings.read(
        env, Path.cwd() if cwd is None else cwd, Path.home() if home is None else home
    )
    default = _resolve_default(configured, settings, env, ask_npm)
    resolved: dict[str, ResolvedRegistry] = {}
    for scope, (url, source) in settings.scope_registries().items():
        resolved[scope] = ResolvedRegistry(url, source, settings.credential_for(url))
    for scope, setting in (scopes or {}).items():
        url = _with_slash(setting.url)
        cred = (
            Credential(
                nerf_dart(url), "Bearer", setting.token, f"registries.npm.scopes.{scope}.token"
            )
            if setting.token
            else settings.credential_for(url)
        )
        resolved[scope] = ResolvedRegistry(url, "config", cred)
    registries = NpmRegistries(default, resolved)
    _check_one_credential_per_prefix(registries)
    return registries


def _check_one_credential_per_prefix(registries: NpmRegistries) -> None:
    seen: dict[str, tuple[str, Credential]] = {}
    named = [("the default registry", registries.default), *registries.scopes.items()]
    for who, reg in named:
        cred = reg.credential
        if cred is None:
            continue
        before = seen.setdefault(cred.http_key, (who, cred))
        if before[1].header != cred.header:
            raise ConfigError(
                f"registries.npm.scopes: {before[0]} and {who} use {cred.prefix} with different "
                f"credentials ({before[1].source}; {cred.source}); one registry URL takes one token"
            )


def _resolve_default(
    configured: str | None, settings: NpmSettings, env: Mapping[str, str], ask_npm: bool
) -> ResolvedRegistry:
    url, source = configured, "config"
    if url is None and (found := settings.registry()):
        url, source = found
    if url is None and ask_npm and (from_cli := _npm_cli_registry(env)):
        url, source = from_cli, "npm config get registry"
    if url is None:
        raise ConfigError(
            "registries.npm.url: null and the machine's npm settings name no registry "
            "(npm_config_registry, .npmrc `registry=`, `npm config get registry`); set the url"
        )
    url = _with_slash(url)
    cred = settings.credential_for(url)
    if cred is None and (legacy := _env_lookup(env, "_authToken")):
        cred = Credential(nerf_dart(url), "Bearer", legacy, "npm_config__authToken")
    return ResolvedRegistry(url=url, source=source, credential=cred)


def resolve_npm_registry(
    configured: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    home: Path | None = None,
    ask_npm: bool = True,
) -> ResolvedRegistry:
    """The default npm registry and the credential npm would send to it, if any."""
    return resolve_npm_registries(configured, env=env, cwd=cwd, home=home, ask_npm=ask_npm).default
