"""Smoke test against the npm registry this machine is configured for (its npm settings decide the
address). Skips cleanly where that registry does not answer."""

import pytest

from watcher.ecosystems.http import HttpSettings, HttpStatusError, RegistryHttp
from watcher.ecosystems.npm.client import fetch_npm_release
from watcher.ecosystems.npm.settings import resolve_npm_registry
from watcher.errors import ConfigError, RegistryError

pytestmark = pytest.mark.live


async def test_left_pad_downloads_and_verifies_with_auto_baseline(tmp_path):
    try:
        registry = resolve_npm_registry()
    except ConfigError as exc:
        pytest.skip(f"no npm registry configured: {exc}")
    settings = HttpSettings(attempts=2, connect_timeout=5, backoff_initial=0.2)
    async with RegistryHttp(settings) as http:
        try:
            result = await fetch_npm_release(
                "left-pad",
                "1.3.0",
                baseline="auto",
                dest_dir=tmp_path,
                registry_url=registry.url,
                http=http,
            )
        except HttpStatusError:
            raise
        except RegistryError as exc:
            pytest.skip(f"npm registry unreachable: {exc}")
    assert result.target.path.stat().st_size > 0
    assert result.target.release.artifacts[0].integrity  # verified against it
    assert result.baseline is not None and result.baseline.release.version == "1.2.0"
