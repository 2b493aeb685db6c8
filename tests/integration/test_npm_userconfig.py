"""`NPM_CONFIG_USERCONFIG` in upper case, as npm accepts it, names the user npmrc for the token
as well as for the registry URL: a package on a private Verdaccio that needs a token to read is
scanned, not refused with HTTP 401."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from npm_servers import Verdaccio, run_verdaccio
from service_harness import unique
from test_npm_scopes import PRIVATE_CONFIG, isolated_env, scan_config

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def locked_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verdaccio]:
    """A registry where `@priv/*` needs a token to read."""
    with run_verdaccio(
        tmp_path_factory.mktemp("verdaccio-userconfig"), user="corp", config=PRIVATE_CONFIG
    ) as server:
        yield server


@pytest.mark.parametrize("variable", ["NPM_CONFIG_USERCONFIG", "npm_config_userconfig"])
async def test_the_user_npmrc_named_in_either_case_gives_the_token(
    locked_registry: Verdaccio, tmp_path: Path, variable: str
) -> None:
    name = f"@priv/{unique('userconfig')}"
    await asyncio.to_thread(locked_registry.publish, name, "1.0.0")
    home = tmp_path / "home"
    home.mkdir()
    npmrc = tmp_path / "elsewhere" / "npmrc"
    npmrc.parent.mkdir()
    origin = locked_registry.url.removeprefix("http://")
    npmrc.write_text(
        f"registry={locked_registry.url}/\n//{origin}/:_authToken={locked_registry.token}\n"
    )
    env = isolated_env(home, **{variable: str(npmrc)})
    config = scan_config(tmp_path, {"url": None})
    argv = ["scan", f"npm:{name}@1.0.0", "--baseline", "none", "--format", "json"]
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "watcher.cli",
            "--log-format",
            "json",
            *argv,
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["target"]["name"] == name and report["target"]["version"] == "1.0.0"
    assert locked_registry.token not in done.stdout + done.stderr
