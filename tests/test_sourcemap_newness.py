"""Newness of `sourcemap-embedded-sources` follows the embedded sources' content, not the map's
path: a renamed or re-split chunk embedding what the baseline embedded is not new; only sources the
baseline did not carry count (`first_party_files_new`)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import orjson

from tests.builders import npm_tarball
from watcher.model import Manifest, ManifestEntry, Severity
from watcher.scanning.scan import ScanRequest, scan
from watcher.store.sqlite.codec import decode_manifest, encode_manifest

SOURCES = {f"../src/mod{n}.ts": f"export const v{n} = {n};\n" * 5 for n in range(6)}


def smap(sources: dict[str, str]) -> str:
    return json.dumps(
        {
            "version": 3,
            "sources": list(sources),
            "sourcesContent": list(sources.values()),
            "mappings": "AAAA",
        }
    )


def release(tmp_path: Path, name: str, maps: dict[str, dict[str, str]]) -> Path:
    return npm_tarball(
        tmp_path / name, {path: smap(sources) for path, sources in maps.items()}, version=name[:5]
    )


def embedded(target: Path, baseline: Path):
    report = scan(ScanRequest(target), ScanRequest(baseline))
    return [f for f in report.findings if f.rule == "sourcemap-embedded-sources"]


def test_renamed_chunk_with_the_same_sources_is_not_new(tmp_path: Path) -> None:
    baseline = release(tmp_path, "1.0.0.tgz", {"dist/main.js.map": SOURCES})
    target = release(tmp_path, "1.0.1.tgz", {"dist/chunk-9f3a.js.map": SOURCES})
    (finding,) = embedded(target, baseline)
    assert finding.new is False
    assert finding.severity is Severity.HIGH  # not raised to its severity_if_new
    assert finding.evidence["first_party_files_new"] == 0
    assert "_source_digests" not in finding.evidence


def test_split_chunks_count_only_sources_the_baseline_did_not_carry(tmp_path: Path) -> None:
    baseline = release(tmp_path, "1.0.0.tgz", {"dist/main.js.map": SOURCES})
    names = list(SOURCES)
    grown = {**{n: SOURCES[n] for n in names[3:]}, "../src/secret-plan.ts": "export const p = 1;\n"}
    target = release(
        tmp_path,
        "1.0.1.tgz",
        {"dist/a.js.map": {n: SOURCES[n] for n in names[:3]}, "dist/b.js.map": grown},
    )
    by_path = {f.path: f for f in embedded(target, baseline)}
    assert by_path["package/dist/a.js.map"].new is False
    assert by_path["package/dist/b.js.map"].new is True
    assert by_path["package/dist/b.js.map"].severity is Severity.CRITICAL
    assert by_path["package/dist/b.js.map"].evidence["first_party_files_new"] == 1


def test_an_edited_source_under_its_path_is_not_new_a_moved_and_edited_one_is(
    tmp_path: Path,
) -> None:
    baseline = release(tmp_path, "1.0.0.tgz", {"dist/main.js.map": SOURCES})
    # a version bump edits version.ts-like files every release: the same file, not a new one
    edited = {**SOURCES, "../src/mod0.ts": "export const v0 = 'changed';\n"}
    target = release(tmp_path, "1.0.1.tgz", {"dist/main.js.map": edited})
    (finding,) = embedded(target, baseline)
    assert finding.new is False
    assert finding.evidence["first_party_files_new"] == 0
    moved = {**SOURCES, "../src/elsewhere/mod9.ts": "export const v9 = 'new';\n"}
    target = release(tmp_path, "1.0.2.tgz", {"dist/main.js.map": moved})
    (finding,) = embedded(target, baseline)
    assert finding.new is True
    assert finding.evidence["first_party_files_new"] == 1


def test_manifest_sources_survive_the_store_and_old_manifests_read(tmp_path: Path) -> None:
    manifest = Manifest(files={"a": ManifestEntry(1, "0" * 64)}, sources={"00ff00ff00ff00ff"})
    assert decode_manifest(encode_manifest(manifest)).sources == {"00ff00ff00ff00ff"}

    old = zlib.compress(orjson.dumps({"files": {}, "fingerprints": {}}))
    assert decode_manifest(old).sources == set()
