"""pip's own index setting, read as pip reads it (`PIP_INDEX_URL`, then its config files, then
pip's built-in default, asked from pip itself): what `registries.pypi.url: null` means. No index
host is spelled out here."""

from __future__ import annotations

import configparser
import importlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import structlog

from watcher.ecosystems.config_sources import ResolvedRegistry
from watcher.ecosystems.config_sources import with_slash as _with_slash
from watcher.errors import ConfigError

log = structlog.get_logger(__name__)

# npm's envReplace: `${NAME}`, `${NAME?}` (empty when unset), backslashes escape the `$`.
_NPM_VAR = re.compile(r"(?<!\\)(\\*)\$\{([^${}?]+)(\?)?\}")
_UNEXPANDED = re.compile(r"\$\{([^${}?]+)\}")
_SCOPE = re.compile(r"@[a-z0-9][a-z0-9._~-]*", re.IGNORECASE)


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


def is_warehouse_index(url: str) -> bool | None:
    """True when `url` is the Simple API of pip's own default index or its test sibling (the
    Warehouse deployments, with management pages and a JSON API); False for any other index
    (devpi, pypiserver, Artifactory, a mirror); None when pip cannot say."""
    try:
        from pip._internal.models.index import PyPI, TestPyPI  # noqa: PLC0415 - pip's own
    except ImportError:
        return None
    wanted = _with_slash(url).lower()
    return any(_with_slash(index.simple_url).lower() == wanted for index in (PyPI, TestPyPI))
