"""npm scoped registries: `.npmrc` parsing as npm reads it, per-scope registry and credential
resolution, the `registries.npm.scopes` configuration, and the HTTP layer sending each registry
only its own credential (two registries on one host, told apart by path)."""

from __future__ import annotations

import base64
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests import fakecreds
from watcher.config import describe_plan, parse_config
from watcher.ecosystems.http import HttpSettings, RegistryHttp
from watcher.ecosystems.npm.client import NpmClient, npm_http
from watcher.ecosystems.npm.settings import (
    NpmScopeSetting,
    npm_env_replace,
    package_scope,
    parse_npmrc,
    resolve_npm_registries,
)
from watcher.errors import ConfigError

# Fake registries on reserved names; nothing here is a real host.
PUBLIC = "https://public.registry.test/"
PRIVATE = "https://npm.corp.test/api/npm/private/"


def token(seed: str) -> str:
    """A format-valid npm token built at test time, never a real one."""
    return fakecreds.npm_token(random.Random(seed))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # An empty PATH keeps the real npm/node out; globalconfig points into tmp.
    return {"PATH": "", "npm_config_globalconfig": str(tmp_path / "global-npmrc"), **extra}


def _resolve(tmp_path: Path, npmrc: str, *, configured: str | None = None, **kwargs: object):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / ".npmrc").write_text(npmrc)
    env = kwargs.pop("env", None) or _env(tmp_path)
    return resolve_npm_registries(
        configured, env=env, cwd=tmp_path, home=home, ask_npm=False, **kwargs
    )


# ------------------------------------------------------------------------------ .npmrc parsing


def test_env_expansion_follows_npm() -> None:
    env = {"TOK": "abc"}
    assert npm_env_replace("${TOK}", env) == "abc"
    assert npm_env_replace("${UNSET}", env) == "${UNSET}"  # npm leaves it as written
    assert npm_env_replace("${UNSET?}x", env) == "x"  # `?`: empty when unset
    assert npm_env_replace("\\${TOK}", env) == "${TOK}"  # escaped
    assert npm_env_replace("\\\\${TOK}", env) == "\\abc"  # an escaped backslash, then expanded


def test_npmrc_inline_comments_quotes_sections_and_keys_expanded() -> None:
    text = (
        "registry = https://public.registry.test/ ; the default\n"
        "@acme:registry=https://${CORP}/api/npm/private/\n"
        "//${CORP}/api/npm/private/:_authToken=${ACME_TOKEN}\n"
        'quoted = "a;b"\n'
        "single = 'c#d'\n"
        "escaped = e\\;f\n"
        "list[] = skipped\n"
        "[section]\n"
        "registry = https://not.npm.test/\n"
    )
    values = parse_npmrc(text, {"CORP": "npm.corp.test", "ACME_TOKEN": "t0k"})
    assert values == {
        "registry": "https://public.registry.test/",
        "@acme:registry": "https://npm.corp.test/api/npm/private/",
        "//npm.corp.test/api/npm/private/:_authToken": "t0k",
        "quoted": "a;b",
        "single": "c#d",
        "escaped": "e;f",
    }


def test_package_scope() -> None:
    assert package_scope("@acme/cli") == "@acme"
    assert package_scope("left-pad") is None


# ------------------------------------------------------------------ registries and credentials


def test_scope_registry_and_tokens_per_registry_from_npmrc(tmp_path: Path) -> None:
    public_token, private_token = token("public"), token("private")
    env = _env(tmp_path, PRIV_TOKEN=private_token)
    resolved = _resolve(
        tmp_path,
        f"registry={PUBLIC}\n"
        f"@acme:registry={PRIVATE}\n"
        f"//public.registry.test/:_authToken={public_token}\n"
        "//npm.corp.test/api/npm/private/:_authToken=${PRIV_TOKEN}\n",
        env=env,
    )
    assert resolved.default.url == PUBLIC and resolved.default.token == public_token
    acme = resolved.for_package("@acme/cli")
    assert acme.url == PRIVATE and acme.token == private_token
    assert resolved.for_package("@other/x") is resolved.default
    assert resolved.for_package("left-pad") is resolved.default
    assert resolved.credentials() == {
        "public.registry.test/": f"Bearer {public_token}",
        "npm.corp.test/api/npm/private/": f"Bearer {private_token}",
    }
    # sources say where a credential came from, never what it is
    shown = repr(resolved) + (acme.credential.source if acme.credential else "")
    assert private_token not in shown and public_token not in shown
    assert ".npmrc" in (acme.credential.source if acme.credential else "")


def test_credential_lookup_walks_up_the_path_like_npm(tmp_path: Path) -> None:
    host_token = token("host-wide")
    resolved = _resolve(
        tmp_path,
        f"registry={PUBLIC}\n@acme:registry={PRIVATE}\n//npm.corp.test/:_authToken={host_token}\n",
    )
    acme = resolved.for_package("@acme/x")
    assert acme.credential is not None
    assert (acme.credential.prefix, acme.token) == ("//npm.corp.test/", host_token)
    assert resolved.default.credential is None  # another host: nothing


def test_basic_auth_forms(tmp_path: Path) -> None:
    password = "pw-" + str(random.Random(1).random())
    encoded = base64.b64encode(password.encode()).decode()
    resolved = _resolve(
        tmp_path,
        f"registry={PUBLIC}\n@acme:registry={PRIVATE}\n@beta:registry=https://beta.corp.test/\n"
        "//npm.corp.test/api/npm/private/:_auth=dXNlcjpwdw==\n"
        f"//beta.corp.test/:username=ci\n//beta.corp.test/:_password={encoded}\n",
    )
    acme, beta = resolved.for_package("@acme/x"), resolved.for_package("@beta/y")
    assert acme.credential is not None and acme.credential.header == "Basic dXNlcjpwdw=="
    assert acme.token is None  # not a bearer token
    expected = base64.b64encode(f"ci:{password}".encode()).decode()
    assert beta.credential is not None and beta.credential.header == f"Basic {expected}"


def test_unset_variable_in_a_token_is_skipped_not_sent(tmp_path: Path) -> None:
    resolved = _resolve(
        tmp_path,
        f"registry={PUBLIC}\n@acme:registry={PRIVATE}\n"
        "//npm.corp.test/api/npm/private/:_authToken=${NOT_SET_ANYWHERE}\n",
    )
    assert resolved.for_package("@acme/x").credential is None


def test_unset_variable_in_a_registry_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"@acme:registry.*NOT_SET_ANYWHERE"):
        _resolve(tmp_path, f"registry={PUBLIC}\n@acme:registry=https://${{NOT_SET_ANYWHERE}}/\n")


def test_precedence_env_project_user_global_for_scopes(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "package.json").write_text("{}")
    (tmp_path / "global-npmrc").write_text(
        "@acme:registry=https://global.corp.test/\n@glob:registry=https://glob.corp.test/\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / ".npmrc").write_text(f"registry={PUBLIC}\n@acme:registry=https://user.corp.test/\n")
    env = _env(tmp_path)

    def acme(environ: dict[str, str]) -> str:
        got = resolve_npm_registries(env=environ, cwd=project, home=home, ask_npm=False)
        assert got.for_package("@glob/x").url == "https://glob.corp.test/"
        return got.for_package("@acme/x").url

    assert acme(env) == "https://user.corp.test/"
    (project / ".npmrc").write_text("@acme:registry=https://project.corp.test\n")
    assert acme(env) == "https://project.corp.test/"
    assert acme({**env, "npm_config_@acme:registry": "https://env.corp.test/"}) == (
        "https://env.corp.test/"
    )


def test_configured_scope_wins_and_its_token_or_the_machines_is_used(tmp_path: Path) -> None:
    machine_token, configured_token = token("machine"), token("configured")
    npmrc = (
        f"registry={PUBLIC}\n@acme:registry=https://elsewhere.corp.test/\n"
        f"//npm.corp.test/api/npm/private/:_authToken={machine_token}\n"
    )
    from_machine = _resolve(tmp_path, npmrc, scopes={"@acme": NpmScopeSetting(PRIVATE)})
    acme = from_machine.for_package("@acme/x")
    assert (acme.url, acme.source, acme.token) == (PRIVATE, "config", machine_token)
    own = _resolve(tmp_path, npmrc, scopes={"@acme": NpmScopeSetting(PRIVATE, configured_token)})
    acme = own.for_package("@acme/x")
    assert acme.token == configured_token
    assert acme.credential is not None and acme.credential.source.startswith("registries.npm")
    assert own.credentials()["npm.corp.test/api/npm/private/"] == f"Bearer {configured_token}"
    assert own.off_default() == {"@acme": acme}


def test_configured_default_url_keeps_machine_scopes(tmp_path: Path) -> None:
    resolved = _resolve(
        tmp_path, f"registry={PUBLIC}\n@acme:registry={PRIVATE}\n", configured="https://cfg.test"
    )
    assert resolved.default.url == "https://cfg.test/"
    assert resolved.for_package("@acme/x").url == PRIVATE


def test_two_registries_needing_different_tokens_at_one_url_is_an_error(tmp_path: Path) -> None:
    scopes = {
        "@a": NpmScopeSetting(PRIVATE, token("a")),
        "@b": NpmScopeSetting(PRIVATE, token("b")),
    }
    with pytest.raises(ConfigError, match="one registry URL takes one token") as caught:
        _resolve(tmp_path, f"registry={PUBLIC}\n", scopes=scopes)
    assert token("a") not in str(caught.value) and token("b") not in str(caught.value)


# -------------------------------------------------------------------------------- configuration

BASE = """
registries:
  npm:
    url: https://public.registry.test/
    scopes:
{scopes}
packages:
{packages}
owners:
  team: {{console: true}}
"""


def _config(scopes: str, packages: str = "  - {ecosystem: npm, name: '@acme/cli', owner: team}"):
    return parse_config(
        BASE.format(scopes=scopes, packages=packages), env={"ACME_NPM_TOKEN": token("cfg")}
    )


def test_scopes_parse_with_secret_token_and_plan_masks_it() -> None:
    config = _config(
        '      "@acme": {url: "https://npm.corp.test/api/npm/private/", token: "${ACME_NPM_TOKEN}"}\n'
        '      "@beta": {url: "https://beta.corp.test/"}'
    )
    npm = config.registries.npm
    assert npm.scope_settings()["@acme"].token == token("cfg")
    assert npm.scope_settings()["@beta"].token is None
    assert token("cfg") not in repr(config)
    plan = describe_plan(config)
    assert token("cfg") not in plan
    assert "@acme/*: https://npm.corp.test/api/npm/private/; token ****; polled every 30s" in plan
    assert "@beta/*: https://beta.corp.test/; token from the machine's .npmrc" in plan
    assert "@acme/cli  owner team; poll 30s via @acme" in plan


def test_empty_token_falls_back_to_the_machine() -> None:
    config = _config('      "@acme": {url: "https://npm.corp.test/", token: "${UNSET_TOKEN:-}"}')
    assert config.registries.npm.scopes["@acme"].token is None


def test_scope_errors_name_their_key_path_and_hide_tokens() -> None:
    secret = token("hidden")
    with pytest.raises(ConfigError) as caught:
        parse_config(
            BASE.format(
                scopes=f'      "acme": {{url: "https://npm.corp.test/"}}\n'
                f'      "@b": {{url: "ftp://x.test/", token: "{secret}"}}\n'
                f'      "@c": {{url: "https://c.test/", tokn: "{secret}"}}',
                packages="  - {ecosystem: npm, name: x, owner: team}",
            )
        )
    message = str(caught.value)
    assert "registries.npm.scopes.@b.url: expected an http(s) URL" in message
    assert "registries.npm.scopes.@c.tokn: unknown key; did you mean 'token'?" in message
    assert secret not in message
    with pytest.raises(ConfigError, match=r"registries\.npm\.scopes\.acme: expected a lowercase"):
        _config('      "acme": {url: "https://npm.corp.test/"}')
    with pytest.raises(ConfigError, match=r"registries\.npm\.scopes\.@b\.token: differs from @a"):
        _config(
            '      "@a": {url: "https://npm.corp.test/", token: "one"}\n'
            '      "@b": {url: "https://npm.corp.test", token: "two"}'
        )


def test_a_pattern_on_a_private_scope_is_an_error_even_with_a_changes_feed() -> None:
    text = BASE.replace(
        "url: https://public.registry.test/",
        "url: https://public.registry.test/\n    changes_url: https://public.registry.test/_changes",
    )
    with pytest.raises(
        ConfigError, match=r"packages\[0\]\.name: pattern '@acme/\*' is on the @acme"
    ):
        parse_config(
            text.format(
                scopes='      "@acme": {url: "https://npm.corp.test/"}',
                packages="  - {ecosystem: npm, name: '@acme/*', owner: team}",
            )
        )


# ------------------------------------------------------------- the HTTP layer: one host, two paths


@contextlib.asynccontextmanager
async def recorder() -> AsyncIterator[tuple[str, list[tuple[str, str | None]]]]:
    """A loopback server recording (path, Authorization) of every request."""
    seen: list[tuple[str, str | None]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.raw_path.replace("%2F", "%2f"), request.headers.get("Authorization")))
        return web.json_response({})

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_two_registries_on_one_host_each_get_only_their_token() -> None:
    async with recorder() as (base, seen):
        netloc = base.removeprefix("http://")
        public_token, private_token = token("pub-path"), token("priv-path")
        settings = HttpSettings(
            tokens={f"{netloc}/pub/": public_token},
            credentials={f"{netloc}/priv/": f"Bearer {private_token}"},
            attempts=1,
        )
        async with RegistryHttp(settings) as http:
            for path in ("/pub/left-pad", "/priv/@acme%2fcli", "/priv/@acme/cli/-/cli-1.0.0.tgz"):
                await http.get_json(base + path, ecosystem="npm")
            await http.get_json(base + "/private-lookalike/x", ecosystem="npm")
            await http.get_json(base + "/", ecosystem="npm")
        assert seen == [
            ("/pub/left-pad", f"Bearer {public_token}"),
            ("/priv/@acme%2fcli", f"Bearer {private_token}"),
            ("/priv/@acme/cli/-/cli-1.0.0.tgz", f"Bearer {private_token}"),
            ("/private-lookalike/x", None),
            ("/", None),
        ]


async def test_longest_prefix_wins_and_host_keys_still_work() -> None:
    async with recorder() as (base, seen):
        netloc = base.removeprefix("http://")
        host_token, path_token = token("host"), token("path")
        settings = HttpSettings(tokens={netloc: host_token, f"{netloc}/npm/private/": path_token})
        async with RegistryHttp(settings) as http:
            await http.get_json(base + "/npm/private/x", ecosystem="npm")
            await http.get_json(base + "/npm/public/x", ecosystem="npm")
        assert [auth for _, auth in seen] == [f"Bearer {path_token}", f"Bearer {host_token}"]


async def test_client_routes_each_scope_to_its_registry(tmp_path: Path) -> None:
    async with recorder() as (base, seen):
        netloc = base.removeprefix("http://")
        private_token = token("routed")
        (tmp_path / "home").mkdir()
        registries = resolve_npm_registries(
            f"{base}/pub/",
            {"@acme": NpmScopeSetting(f"{base}/priv", private_token)},
            env=_env(tmp_path),
            cwd=tmp_path,
            home=tmp_path / "home",
            ask_npm=False,
        )
        async with npm_http(registries, HttpSettings(attempts=1)) as http:
            client = NpmClient.for_registries(http, registries)
            assert client.registry_for("@acme/cli") == f"{base}/priv/"
            await client.fetch_packument("@acme/cli")
            await client.fetch_packument("left-pad")
            await client.fetch_packument("@other/x")
        assert seen == [
            ("/priv/@acme%2fcli", f"Bearer {private_token}"),
            ("/pub/left-pad", None),
            ("/pub/@other%2fx", None),
        ]
        assert netloc  # the recorder listened on loopback
