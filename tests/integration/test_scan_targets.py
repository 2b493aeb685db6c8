"""`watcher scan` on registry targets against real local registries: the release and its previous
version are downloaded, verified and compared; a local tarball finds its baseline on the registry."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from npm_servers import Verdaccio
from pypi_servers import Devpi, PypiServer, build_sdist, build_wheel

from tests import fakecreds
from tests.builders import npm_tarball


def npm_token(seed: str) -> str:
    """A format-valid npm token (with its CRC32 checksum) built at test time."""
    return fakecreds.npm_token(random.Random(seed))


def watcher(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "watcher.cli",
            "--log-format",
            "json",
            "scan",
            *args,
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def config_file(tmp_path: Path, npm_url: str = "", pypi_url: str = "") -> Path:
    path = tmp_path / "watcher.yaml"
    registries = {"npm": {"url": npm_url or None}, "pypi": {"url": pypi_url or None}}
    doc = {
        "store": {"path": str(tmp_path / "state.db")},
        "registries": registries,
        "packages": [{"ecosystem": "npm", "name": "placeholder-pkg", "owner": "team"}],
        "owners": {"team": {"console": True}},
        "policy": {"internal_domains": ["corp.acme.example"]},
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def test_npm_target_with_automatic_baseline(verdaccio: Verdaccio, tmp_path: Path) -> None:
    verdaccio.publish("scan-target-demo", "1.0.0")
    verdaccio.publish("scan-target-demo", "2.0.0")
    leak = {
        "index.js": b"module.exports = 1;\n",
        # npm itself never packs .npmrc; a token in code is what gets through
        "lib/publish.js": f"const token = '{npm_token('scan-target')}';\n".encode(),
        ".env": b"DEBUG=1\n",
        "dist/app.js.map": json.dumps(
            {
                "version": 3,
                "sources": ["src/app.ts"],
                "sourcesContent": ["export const a = 1;\n"],
                "mappings": "AAAA",
            }
        ).encode(),
    }
    verdaccio.publish("scan-target-demo", "1.0.1", leak, tag="maint-one")  # a backport below 2.0.0
    config = config_file(tmp_path, npm_url=verdaccio.url)
    result = watcher(config, "npm:scan-target-demo@1.0.1", "--format", "json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["target"]["version"] == "1.0.1"
    assert report["baseline"]["version"] == "1.0.0"  # the greatest version below, not the newest
    rules = {f["rule"]: f for f in report["findings"]}
    assert {"dotenv-file", "npm-access-token", "sourcemap-embedded-sources"} <= set(rules)
    assert all(f["new"] for f in report["findings"])
    assert npm_token("scan-target") not in result.stdout + result.stderr

    none = json.loads(
        watcher(
            config, "npm:scan-target-demo@1.0.1", "--baseline", "none", "--format", "json"
        ).stdout
    )
    assert none["baseline"] is None


def test_local_tarball_finds_its_previous_release_on_the_registry(
    verdaccio: Verdaccio, tmp_path: Path
) -> None:
    verdaccio.publish("scan-local-demo", "3.1.0", {"index.js": b"1;\n", "terraform.tfstate": b"{}"})
    local = npm_tarball(
        tmp_path / "local.tgz",
        {"index.js": "1;\n", "terraform.tfstate": "{}"},
        name="scan-local-demo",
        version="3.2.0",
    )
    config = config_file(tmp_path, npm_url=verdaccio.url)
    result = watcher(config, str(local), "--baseline", "auto", "--format", "json")
    report = json.loads(result.stdout)
    assert report["baseline"]["version"] == "3.1.0"
    [tfstate] = [f for f in report["findings"] if f["rule"] == "terraform-state"]
    assert tfstate["new"] is False  # shipped before: not news, though still critical
    assert result.returncode == 1


def test_unknown_npm_target_is_a_clear_error(verdaccio: Verdaccio, tmp_path: Path) -> None:
    config = config_file(tmp_path, npm_url=verdaccio.url)
    result = watcher(config, "npm:no-such-package-here@1.0.0")
    assert result.returncode == 2
    assert "does not exist" in result.stderr.strip().splitlines()[-1]


def test_unknown_pypi_project_or_version_is_not_published(
    pypiserver: PypiServer, tmp_path: Path
) -> None:
    """The same kind of message as npm's, not a raw "HTTP 404 for <url>"."""
    config = config_file(tmp_path, pypi_url=pypiserver.url + "/simple/")
    result = watcher(config, "pypi:no-such-project-here==1.0.0")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"watcher: pypi:no-such-project-here is not published on {pypiserver.url}/simple/"
    ), last
    out = tmp_path / "dists"
    pypiserver.upload([build_sdist(out, "np-demo-known", "1.0.0")])
    result = watcher(config, "pypi:np-demo-known==9.9.9")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == "watcher: pypi:np-demo-known==9.9.9 is not published", last


def test_pypi_target_scans_every_file_of_the_release(devpi: Devpi, tmp_path: Path) -> None:
    out = tmp_path / "dists"
    devpi.upload(
        [
            build_sdist(out / "a", "scan-py-demo", "1.0.0"),
            build_wheel(out / "a", "scan-py-demo", "1.0.0"),
        ]
    )
    leaky = {"scan_py_demo/.env": b"API_TOKEN=Zq8vN3kLp0Xw7RtY2mBc\n"}
    devpi.upload(
        [
            build_sdist(out / "b", "scan-py-demo", "1.1.0", leaky),
            build_wheel(out / "b", "scan-py-demo", "1.1.0", files=leaky),
        ]
    )
    config = config_file(tmp_path, pypi_url=devpi.simple_url)
    result = watcher(config, "pypi:scan-py-demo==1.1.0", "--format", "json")
    report = json.loads(result.stdout)
    assert report["baseline"]["version"] == "1.0.0"
    env = sorted(f["path"] for f in report["findings"] if f["rule"] == "dotenv-file")
    assert env == [
        "scan_py_demo-1.1.0-py3-none-any.whl/scan_py_demo/.env",
        "scan_py_demo-1.1.0.tar.gz/scan_py_demo-1.1.0/scan_py_demo/.env",
    ]
    assert result.returncode == 1
