"""The npm client and the shared HTTP layer against a real Verdaccio, directly and through a
fault-injecting proxy."""

import hashlib
import time

import pytest
from npm_servers import Fault, FaultProxy, sri_sha512
from prometheus_client import REGISTRY

from watcher.ecosystems.http import (
    DownloadTooLarge,
    HttpSettings,
    HttpStatusError,
    RegistryHttp,
    RegistryUnavailable,
)
from watcher.ecosystems.npm.client import NpmClient, fetch_npm_release
from watcher.errors import IntegrityError, RegistryError

FAST = HttpSettings(backoff_initial=0.05, backoff_max=0.2, attempts=4, read_timeout=1.0)


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_scoped_packument_full_document_and_etag_304(verdaccio):
    verdaccio.publish("@wtest/scoped", "1.0.0")
    async with RegistryHttp(FAST) as http:
        client = NpmClient(http, verdaccio.url)
        first = await client.fetch_packument("@wtest/scoped")
        assert first.packument is not None and set(first.packument.versions) == {"1.0.0"}
        assert first.packument.times["1.0.0"] is not None  # only the full document has `time`
        assert first.packument.generation is not None
        assert first.etag
        before = metric("watcher_registry_not_modified_total", ecosystem="npm")
        again = await client.fetch_packument("@wtest/scoped", first.etag)
        assert again.not_modified and again.packument is None
        assert metric("watcher_registry_not_modified_total", ecosystem="npm") == before + 1
        missing = await client.fetch_packument("never-published-here")
        assert missing.missing


async def test_tarball_download_is_verified_and_capped(verdaccio, tmp_path):
    good = verdaccio.publish_raw("dl-good", "1.0.0", files={"index.js": b"x = 1;\n" * 100})
    # Verdaccio checks only dist.shasum, so a lying dist.integrity is served as published.
    verdaccio.publish_raw("dl-tampered", "1.0.0", integrity=sri_sha512(b"something else"))
    async with RegistryHttp(FAST) as http:
        client = NpmClient(http, verdaccio.url)
        doc = (await client.fetch_packument("dl-good")).packument
        fetched = await client.download(doc.release("1.0.0"), tmp_path)
        assert fetched.path.read_bytes() == good
        assert fetched.sha256 == hashlib.sha256(good).hexdigest()
        assert fetched.release.artifacts[0].size == len(good)

        (tmp_path / "small").mkdir()
        with pytest.raises(DownloadTooLarge):
            await client.download(doc.release("1.0.0"), tmp_path / "small", max_bytes=10)
        assert not (tmp_path / "small" / "dl-good-1.0.0.tgz").exists()

        tampered = (await client.fetch_packument("dl-tampered")).packument
        with pytest.raises(IntegrityError):
            await client.download(tampered.release("1.0.0"), tmp_path)
        assert not (tmp_path / "dl-tampered-1.0.0.tgz").exists()  # never handed on


async def test_one_shot_fetch_resolves_backport_baseline_by_version_order(verdaccio, tmp_path):
    for version in ("1.0.0", "1.1.0", "2.0.0"):
        verdaccio.publish("oneshot-pkg", version)
    verdaccio.publish("oneshot-pkg", "1.0.1", tag="maint")  # a backport, published last
    result = await fetch_npm_release(
        "oneshot-pkg", "1.0.1", baseline="auto", dest_dir=tmp_path, registry_url=verdaccio.url
    )
    assert result.target.release.version == "1.0.1"
    assert result.baseline is not None and result.baseline.release.version == "1.0.0"
    assert result.target.path.exists() and result.baseline.path.exists()
    latest = await fetch_npm_release(
        "oneshot-pkg", "latest", dest_dir=tmp_path / "l", registry_url=verdaccio.url
    )
    assert latest.target.release.version == "2.0.0"  # dist-tags resolve
    assert latest.baseline is None
    with pytest.raises(RegistryError):
        await fetch_npm_release(
            "oneshot-pkg", "9.9.9", dest_dir=tmp_path, registry_url=verdaccio.url
        )


async def test_transient_faults_are_retried_and_final_ones_are_not(verdaccio):
    verdaccio.publish("fault-pkg", "1.0.0")
    proxy = await FaultProxy(verdaccio.url).start()
    try:
        async with RegistryHttp(FAST) as http:
            client = NpmClient(http, proxy.url)
            retries = metric("watcher_registry_retries_total", ecosystem="npm")
            proxy.inject(
                Fault("status", "/fault-pkg", times=2, status=503),
                Fault("truncate", "/fault-pkg"),
                Fault("delay", "/fault-pkg", seconds=2.5),  # beyond the 1 s read timeout
            )
            doc = await client.fetch_packument("fault-pkg")
            assert set(doc.packument.versions) == {"1.0.0"}
            assert metric("watcher_registry_retries_total", ecosystem="npm") >= retries + 4
            assert metric("watcher_registry_errors_total", ecosystem="npm", status="503") >= 2

            proxy.inject(Fault("retry_after", "/fault-pkg", seconds=1))
            started = time.monotonic()
            await client.fetch_packument("fault-pkg")
            assert time.monotonic() - started >= 0.9  # waited as told, not the 0.05 s backoff

            proxy.seen.clear()
            proxy.inject(Fault("status", "/fault-pkg", status=401))
            with pytest.raises(HttpStatusError) as err:
                await client.fetch_packument("fault-pkg")
            assert err.value.status == 401 and len(proxy.seen) == 1  # not retried

            proxy.inject(Fault("status", "/fault-pkg", times=10, status=502))
            with pytest.raises(RegistryUnavailable):
                await client.fetch_packument("fault-pkg")
    finally:
        proxy.faults.clear()
        await proxy.close()


async def test_auth_token_goes_only_to_its_host(verdaccio):
    proxy = await FaultProxy(verdaccio.url).start()
    try:
        netloc = proxy.url.removeprefix("http://")
        settings = HttpSettings(tokens={netloc: verdaccio.token})
        async with RegistryHttp(settings) as http:
            response = await http.get_json(f"{proxy.url}/-/whoami", ecosystem="npm")
            assert response.data == {"username": "tester"}
        other_host = HttpSettings(tokens={"127.0.0.2:1": verdaccio.token})
        async with RegistryHttp(other_host) as http:
            try:
                anonymous = (await http.get_json(f"{proxy.url}/-/whoami", ecosystem="npm")).data
            except HttpStatusError as err:
                anonymous = err.status
            assert anonymous != {"username": "tester"}
    finally:
        await proxy.close()
