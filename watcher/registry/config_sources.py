"""Where the registries are when the configuration says `url: null`: the machine's own npm and pip
settings (environment, then config files, then the tool's own answer), which also makes corporate
mirrors work. No registry host is spelled out here on purpose.
"""

from __future__ import annotations

import configparser
import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from watcher.errors import ConfigError

_VAR = re.compile(r"\$\{([^}]+)\}")


@dataclass(frozen=True, slots=True)
class ResolvedRegistry:
    url: str  # always ends with "/"
    source: str  # where the address came from, for logs and error messages
    token: str | None = field(default=None, repr=False)


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


# ---------------------------------------------------------------------------------------- npm


def parse_npmrc(text: str, env: Mapping[str, str]) -> dict[str, str]:
    """npm's ini subset: `key=value` lines, `;`/`#` comments, `${VAR}` expansion, optional quotes."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in ";#" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = _VAR.sub(lambda m: env.get(m.group(1), ""), value)
    return values


def _project_dir(cwd: Path) -> Path:
    """npm's local prefix: the nearest directory holding package.json or node_modules."""
    for directory in (cwd, *cwd.parents):
        if (directory / "package.json").exists() or (directory / "node_modules").is_dir():
            return directory
    return cwd


def _npm_prefix(env: Mapping[str, str]) -> Path | None:
    if env.get("npm_config_prefix"):
        return Path(env["npm_config_prefix"])
    node = shutil.which("node", path=env.get("PATH"))
    return Path(node).resolve().parent.parent if node else None


def npmrc_files(env: Mapping[str, str], cwd: Path, home: Path) -> list[Path]:
    """The npmrc files npm reads, highest precedence first (project, user, global)."""
    files = [_project_dir(cwd) / ".npmrc"]
    files.append(
        Path(env["npm_config_userconfig"]) if env.get("npm_config_userconfig") else home / ".npmrc"
    )
    if env.get("npm_config_globalconfig"):
        files.append(Path(env["npm_config_globalconfig"]))
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


def _npm_cli_registry(env: Mapping[str, str]) -> str | None:
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
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value.startswith(("http://", "https://")) else None


def resolve_npm_registry(
    configured: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    home: Path | None = None,
    ask_npm: bool = True,
) -> ResolvedRegistry:
    """The npm registry to use and its auth token (from `//host/:_authToken=` lines), if any."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    home = Path.home() if home is None else home
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

    url, source = configured, "config"
    if url is None and (from_env := _env_lookup(env, "registry")):
        url, source = from_env, "npm_config_registry"
    if url is None and merged.get("registry"):
        url, source = merged["registry"], origin["registry"]
    if url is None and ask_npm and (from_cli := _npm_cli_registry(env)):
        url, source = from_cli, "npm config get registry"
    if url is None:
        raise ConfigError(
            "registries.npm.url: null and the machine's npm settings name no registry "
            "(npm_config_registry, .npmrc `registry=`, `npm config get registry`); set the url"
        )
    url = _with_slash(url)
    token = merged.get(f"{nerf_dart(url)}:_authToken") or _env_lookup(env, "_authToken")
    return ResolvedRegistry(url=url, source=source, token=token or None)


# ---------------------------------------------------------------------------------------- pip


def pip_config_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """pip's config files in load order (later ones override earlier ones)."""
    if "PIP_CONFIG_FILE" in env:
        # pip treats os.devnull here as "load no files at all".
        value = env["PIP_CONFIG_FILE"]
        return [] if value == os.devnull else [Path(value)]
    files: list[Path] = []
    xdg_dirs = env.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files.extend(Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(":") if d)
    files.append(Path("/etc/pip.conf"))
    files.append(home / ".pip" / "pip.conf")
    xdg_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    files.append(xdg_home / "pip" / "pip.conf")
    venv = env.get("VIRTUAL_ENV") or (sys.prefix if sys.prefix != sys.base_prefix else None)
    if venv:
        files.append(Path(venv) / "pip.conf")
    return files


def _pip_default_index() -> str | None:
    """pip's own built-in default, asked from pip itself so that no host is written here."""
    try:
        module = importlib.import_module("pip._internal.models.index")
        value = getattr(module, "PyPI").simple_url  # noqa: B009 - untyped third-party attribute
    except (ImportError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def resolve_pypi_index(
    configured: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    ask_pip: bool = True,
) -> ResolvedRegistry:
    """The Simple API index URL (ending in `/simple/` or whatever the machine set)."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if configured is not None:
        return ResolvedRegistry(_with_slash(configured), "config")
    if env.get("PIP_INDEX_URL"):
        return ResolvedRegistry(_with_slash(env["PIP_INDEX_URL"]), "PIP_INDEX_URL")
    found: tuple[str, str] | None = None
    for path in pip_config_files(env, home):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue
        # A command section overrides [global] for that command; downloads go through `install`.
        for section in ("global", "download", "install"):
            if parser.has_option(section, "index-url"):
                found = (parser.get(section, "index-url").strip(), f"{path} [{section}]")
    if found is not None and found[0]:
        return ResolvedRegistry(_with_slash(found[0]), found[1])
    if ask_pip and (default := _pip_default_index()):
        return ResolvedRegistry(_with_slash(default), "pip default")
    raise ConfigError(
        "registries.pypi.url: null and the machine's pip settings name no index "
        "(PIP_INDEX_URL, pip.conf `index-url`); set the url"
    )
