"""`canary-found`: a value planted by the owner pages critical wherever the release carries it (a
minified bundle, a map source, a nested archive, a binary), named by its id, never its value."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.builders import npm_tarball
from watcher.cli.render import render_json, render_sarif, render_text
from watcher.config import load_config
from watcher.model import Category, Report, Severity
from watcher.private.canaries import Canary
from watcher.scanning.checks.base import ScanOptions
from watcher.scanning.scan import ScanRequest, scan_artifact


def planted() -> str:
    return "acmecanary_" + secrets.token_hex(12)  # made at test time, nothing real


def scan(path: Path, *canaries: Canary) -> Report:
    return scan_artifact(ScanRequest(path, options=ScanOptions(canaries=canaries)))


def canary_findings(report: Report) -> list:
    return [f for f in report.findings if f.rule == "canary-found"]


def test_canary_in_a_minified_bundle_pages_critical_by_id(tmp_path: Path) -> None:
    value = planted()
    bundle = "!function(){var a=" + json.dumps(value) + ",b=function(c){return c+1};" * 200 + "}();"
    pkg = npm_tarball(tmp_path / "p.tgz", {"dist/app.min.js": bundle})
    report = scan(pkg, Canary("wiki-deploy-page", value=value))
    [found] = canary_findings(report)
    assert found.severity is Severity.CRITICAL and found.category is Category.SECRET
    assert found.path == "package/dist/app.min.js" and found.line == 1
    assert found.evidence == {"canary": "wiki-deploy-page"}
    for rendered in (render_json(report), render_sarif(report), render_text(report)):
        assert value not in rendered and "wiki-deploy-page" in rendered


def test_canary_in_a_map_source_and_a_nested_archive(tmp_path: Path) -> None:
    in_map, in_nested = planted(), planted()
    smap = {
        "version": 3,
        "sources": ["webpack://app/./src/config.ts"],
        "sourcesContent": [f'export const token = "{in_map}";\n'],
        "mappings": "AAAA",
    }
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as archive:
        data = f"CANARY={in_nested}\n".encode()
        info = tarfile.TarInfo("package/.env.example")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    pkg = npm_tarball(
        tmp_path / "p.tgz",
        {
            "dist/app.js": "x()\n",
            "dist/app.js.map": json.dumps(smap),
            "vendor/old.tgz": inner.getvalue(),
        },
    )
    report = scan(pkg, Canary("repo-config", value=in_map), Canary("ci-env", value=in_nested))
    where = {f.evidence["canary"]: f.path for f in canary_findings(report)}
    assert where == {
        "repo-config": "package/dist/app.js.map → webpack://app/./src/config.ts",
        "ci-env": "package/vendor/old.tgz!package/.env.example",
    }


def test_hashed_canary_matches_only_the_whole_value(tmp_path: Path) -> None:
    value = "ACMEWIKI-" + secrets.token_hex(10)
    canary = Canary("wiki", prefix="ACMEWIKI-", sha256=hashlib.sha256(value.encode()).hexdigest())
    hit = npm_tarball(tmp_path / "hit.tgz", {"a.js": f"const k='{value}';\n"})
    assert [f.evidence["canary"] for f in canary_findings(scan(hit, canary))] == ["wiki"]
    near = npm_tarball(tmp_path / "near.tgz", {"a.js": "const k='ACMEWIKI-0000';\n"})
    assert canary_findings(scan(near, canary)) == []


def test_canary_in_a_binary(tmp_path: Path) -> None:
    value = planted()
    blob = b"\x7fELF\x02\x01" + bytes(200) + value.encode() + bytes(100)
    pkg = npm_tarball(tmp_path / "p.tgz", {"prebuilds/addon.node": blob})
    assert [f.path for f in canary_findings(scan(pkg, Canary("bin", value=value)))] == [
        "package/prebuilds/addon.node"
    ]


def test_config_canaries_top_level_and_per_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = planted()
    monkeypatch.setenv("WIKI_CANARY", value)
    config = tmp_path / "watcher.yaml"
    config.write_text(
        textwrap.dedent(
            """
            packages:
              - {ecosystem: npm, name: web, owner: web}
            owners:
              web:
                console: true
                canaries: [{id: web-repo, prefix: "WEBREPO-", sha256: "%s"}]
            canaries: [{id: wiki, value: "${WIKI_CANARY}"}]
            """
            % ("ab" * 32)
        )
    )
    loaded = load_config(config)
    assert [c.id for c in loaded.scan_options("web").canaries] == ["wiki", "web-repo"]
    assert [c.id for c in loaded.scan_options().canaries] == ["wiki"]
    assert value not in repr(loaded) and value not in repr(loaded.scan_options("web"))
    from watcher.config import describe_plan  # noqa: PLC0415

    assert value not in describe_plan(loaded)
    config.write_text(config.read_text().replace('"${WIKI_CANARY}"', "short"))
    with pytest.raises(Exception, match="at least 8 characters"):
        load_config(config)
