"""The machine's npm and pip settings decide the registry when the config says `url: null`."""

from pathlib import Path

import pytest

from watcher.ecosystems.npm.settings import nerf_dart, parse_npmrc, resolve_npm_registry
from watcher.ecosystems.pypi.settings import resolve_pypi_index
from watcher.errors import ConfigError

# Fake registries on reserved names; nothing here is a real host.
PROJECT = "https://project.registry.test/npm/"
USER = "https://user.registry.test/"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # An empty PATH keeps the real npm/node out of the picture; globalconfig points into tmp.
    return {"PATH": "", "npm_config_globalconfig": str(tmp_path / "global-npmrc"), **extra}


def test_npmrc_parsing_comments_quotes_and_env_expansion():
    values = parse_npmrc(
        '; comment\n# comment\nregistry = "https://${HOST}/x/"\n//h/:_authToken=${TOKEN}\nnoequals\n',
        {"HOST": "mirror.test", "TOKEN": "tok"},
    )
    assert values == {"registry": "https://mirror.test/x/", "//h/:_authToken": "tok"}


def test_npm_precedence_env_then_project_then_user_then_global(tmp_path):
    home, project = tmp_path / "home", tmp_path / "proj" / "sub"
    home.mkdir()
    project.mkdir(parents=True)
    (tmp_path / "proj" / "package.json").write_text("{}")
    (tmp_path / "global-npmrc").write_text("registry=https://global.registry.test/\n")
    (home / ".npmrc").write_text(f"registry={USER}\n")
    env = _env(tmp_path)
    assert resolve_npm_registry(env=env, cwd=project, home=home, ask_npm=False).url == USER
    (tmp_path / "proj" / ".npmrc").write_text(
        f"registry={PROJECT}\n//project.registry.test/npm/:_authToken=abc\n"
    )
    resolved = resolve_npm_registry(env=env, cwd=project, home=home, ask_npm=False)
    assert (resolved.url, resolved.token) == (PROJECT, "abc")
    assert "abc" not in repr(resolved)
    env["NPM_CONFIG_REGISTRY"] = "https://env.registry.test"
    resolved = resolve_npm_registry(env=env, cwd=project, home=home, ask_npm=False)
    assert resolved.url == "https://env.registry.test/" and resolved.token is None
    assert (
        resolve_npm_registry("https://cfg.test", env=env, cwd=project, home=home).url
        == "https://cfg.test/"
    )


def test_npm_without_any_setting_is_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"registries\.npm\.url"):
        resolve_npm_registry(env=_env(tmp_path), cwd=tmp_path, home=tmp_path, ask_npm=False)


def test_nerf_dart_matches_npm_credential_keys():
    assert nerf_dart("https://r.test:8443/npm") == "//r.test:8443/npm/"


def test_pip_env_then_config_files_in_load_order(tmp_path):
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    xdg = tmp_path / "xdg"
    (xdg / "pip").mkdir(parents=True)
    (xdg / "pip" / "pip.conf").write_text("[global]\nindex-url = https://site.index.test/simple\n")
    env = {"XDG_CONFIG_DIRS": str(xdg), "VIRTUAL_ENV": str(tmp_path / "novenv")}
    got = resolve_pypi_index(env=env, home=home, ask_pip=False)
    assert got.url == "https://site.index.test/simple/"
    (home / ".config" / "pip" / "pip.conf").write_text(
        "[global]\nindex-url = https://user.index.test/simple\n[install]\nindex-url = https://install.index.test/simple/\n"
    )
    assert (
        resolve_pypi_index(env=env, home=home, ask_pip=False).url
        == "https://install.index.test/simple/"
    )
    env["PIP_INDEX_URL"] = "https://env.index.test/simple"
    assert resolve_pypi_index(env=env, home=home, ask_pip=False).source == "PIP_INDEX_URL"


def test_pip_without_any_setting_is_a_clear_config_error(tmp_path):
    env = {"PIP_CONFIG_FILE": str(tmp_path / "none.conf")}
    with pytest.raises(ConfigError, match=r"registries\.pypi\.url"):
        resolve_pypi_index(env=env, home=tmp_path, ask_pip=False)
    # pip's own built-in default is asked from pip itself (no host spelled in our code).
    assert resolve_pypi_index(env=env, home=tmp_path).url.startswith("https://")
