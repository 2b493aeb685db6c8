"""`private-source`: a private tree indexed at test time is found in releases whatever shape its
files take (renamed, moved, plain, map sources under a bundler namespace, a nested tarball,
reformatted), counted per private file; code the index never saw stays quiet, and maps of it stop
paging once an index is configured."""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from tests.builders import npm_tarball
from tests.privatetree import build_private_tree, open_source_module, reformatted
from watcher.errors import FingerprintError
from watcher.model import Category, Finding, Report, Severity
from watcher.private.build import build_index
from watcher.private.keys import FingerprintKey
from watcher.scanning.checks.base import ScanOptions
from watcher.scanning.scan import ScanRequest, scan_artifact

KEY = "test-fingerprint-key-" + "x" * 16


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("private")
    tree = build_private_tree(root / "acme-billing", files=12)
    index = root / "acme.wfp"
    build_index([root / "acme-billing"], index, FingerprintKey(KEY), name="acme-billing")
    return index, tree


def scan(path: Path, index: Path | None, **extra: object) -> Report:
    options = (
        ScanOptions(fingerprints=(str(index),), fingerprint_key=KEY, **extra)  # type: ignore[arg-type]
        if index
        else ScanOptions()
    )
    return scan_artifact(ScanRequest(path, options=options))


def private_finding(report: Report) -> Finding | None:
    found = [f for f in report.findings if f.rule == "private-source"]
    assert len(found) <= 1, "one private-source finding per artifact"
    return found[0] if found else None


def sources(tree: dict[str, str]) -> list[str]:
    return list(tree.values())


def test_renamed_moved_and_plain_files_are_found_and_counted(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    index, tree = private
    src = sources(tree)
    pkg = npm_tarball(
        tmp_path / "p.tgz",
        {
            "dist/chunk-7f3a.js": src[0],  # renamed
            "lib/vendor/deep/elsewhere.ts": src[1],  # moved under another directory
            "src/billing/module2.ts": src[2],  # shipped plain
            "index.js": "module.exports = require('./dist/chunk-7f3a.js');\n",
        },
    )
    finding = private_finding(scan(pkg, index))
    assert finding is not None
    assert finding.severity is Severity.CRITICAL
    assert finding.category is Category.UNEXPECTED_CONTENT  # no map sources involved
    assert finding.evidence["private_files"] == 3
    assert finding.evidence["indexes"]["acme-billing"]["files"] == 3
    assert finding.evidence["private_lines"] > 100
    assert set(finding.evidence["paths"]) == {
        "package/dist/chunk-7f3a.js",
        "package/lib/vendor/deep/elsewhere.ts",
        "package/src/billing/module2.ts",
    }


def test_edited_copy_is_found_by_its_lines(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    index, tree = private
    lines = sources(tree)[3].splitlines()
    edited = "\n".join(line + " // patched" if i % 4 == 0 else line for i, line in enumerate(lines))
    pkg = npm_tarball(tmp_path / "p.tgz", {"lib/a.js": edited})
    finding = private_finding(scan(pkg, index))
    assert finding is not None and finding.evidence["matched_by"] == {"lines": 1}


def test_map_sources_under_a_bundler_namespace_are_found(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    index, tree = private
    src = sources(tree)
    smap = {
        "version": 3,
        "file": "bundle.js",
        "sources": [
            "webpack://@acme/internal-app/./node_modules/.pnpm/x/renamed.ts",  # looks third-party
            "webpack://@acme/internal-app/./weird/path.ts",
            "webpack://@acme/internal-app/./node_modules/leftpad/index.js",
        ],
        "sourcesContent": [src[4], src[5], open_source_module(random.Random(3))],
        "mappings": "AAAA",
    }
    pkg = npm_tarball(
        tmp_path / "p.tgz",
        {"dist/bundle.js": "console.log(1);\n", "dist/bundle.js.map": json.dumps(smap)},
    )
    report = scan(pkg, index)
    finding = private_finding(report)
    assert finding is not None
    assert finding.category is Category.SOURCE_MAP
    assert finding.evidence["private_files"] == 2
    assert all(
        p.startswith("package/dist/bundle.js.map → webpack://") for p in finding.evidence["paths"]
    )
    # the map itself still pages as a map with private sources
    embedded = [f for f in report.findings if f.rule == "sourcemap-embedded-sources"]
    assert embedded and embedded[0].severity.at_least(Severity.HIGH)


def test_a_private_file_inside_a_nested_tarball_is_found(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    index, tree = private
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as archive:
        data = sources(tree)[6].encode()
        info = tarfile.TarInfo("package/src/secret-core.ts")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    pkg = npm_tarball(tmp_path / "p.tgz", {"vendor/acme-core-2.0.0.tgz": inner.getvalue()})
    finding = private_finding(scan(pkg, index))
    assert finding is not None
    assert finding.evidence["paths"] == [
        "package/vendor/acme-core-2.0.0.tgz!package/src/secret-core.ts"
    ]


def test_reformatted_code_is_found_by_winnowing(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    index, tree = private
    pkg = npm_tarball(tmp_path / "p.tgz", {"lib/fmt.ts": reformatted(sources(tree)[7])})
    finding = private_finding(scan(pkg, index))
    assert finding is not None
    assert finding.evidence["matched_by"] == {"winnowing": 1}
    assert finding.evidence["private_files"] == 1


def test_open_source_code_the_index_never_saw_stays_quiet(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    index, _ = private
    files = {f"lib/dep{n}.ts": open_source_module(random.Random(n)) for n in range(6)}
    # real open-source code too: this interpreter's own standard library
    for name in ("json/decoder.py", "textwrap.py", "argparse.py"):
        files[f"vendored/{name}"] = (Path(json.__file__).parent.parent / name).read_text()
    pkg = npm_tarball(tmp_path / "p.tgz", files)
    assert private_finding(scan(pkg, index)) is None


def test_with_an_index_a_map_of_open_source_code_is_not_paged(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    index, _ = private
    smap = {
        "version": 3,
        "sources": ["../src/parser.ts", "../src/lexer.ts"],
        "sourcesContent": [
            open_source_module(random.Random(1)),
            open_source_module(random.Random(2)),
        ],
        "mappings": "AAAA",
    }
    pkg = npm_tarball(
        tmp_path / "p.tgz",
        {"dist/index.js": "x();\n", "dist/index.js.map": json.dumps(smap)},
    )
    without = [f for f in scan(pkg, None).findings if f.rule == "sourcemap-embedded-sources"]
    assert without and without[0].severity is Severity.HIGH  # the path heuristic pages
    report = scan(pkg, index)
    embedded = [f for f in report.findings if f.rule == "sourcemap-embedded-sources"]
    assert embedded[0].severity is Severity.LOW
    assert embedded[0].severity_if_new is None
    assert embedded[0].evidence["private_source_match"] is False
    assert private_finding(report) is None


def test_a_map_repeating_private_sources_of_an_earlier_map_still_pages(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The scanner scans a source seen in an earlier map once; the second map is judged by its
    own sources all the same."""
    index, tree = private
    smap = json.dumps(
        {
            "version": 3,
            "sources": ["../src/a.ts"],
            "sourcesContent": [sources(tree)[8]],
            "mappings": "A",
        }
    )
    pkg = npm_tarball(
        tmp_path / "p.tgz",
        {
            "esm/index.js.map": smap,
            "cjs/index.js.map": smap,
            "esm/index.js": "x\n",
            "cjs/index.js": "x\n",
        },
    )
    report = scan(pkg, index)
    embedded = [f for f in report.findings if f.rule == "sourcemap-embedded-sources"]
    assert len(embedded) == 2
    assert all(f.severity is Severity.HIGH for f in embedded)
    finding = private_finding(report)
    assert finding is not None and finding.evidence["private_files"] == 1


def test_threshold_decides_how_much_of_a_file_counts(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    index, tree = private
    lines = sources(tree)[9].splitlines()
    third = "\n".join(lines[: len(lines) // 3])  # a third of the file's lines
    pkg = npm_tarball(tmp_path / "p.tgz", {"lib/part.ts": third})
    assert private_finding(scan(pkg, index)) is None  # default 0.5
    assert private_finding(scan(pkg, index, fingerprint_threshold=0.2)) is not None


def test_the_report_never_carries_private_code(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    from watcher.cli.render import render_json  # noqa: PLC0415

    index, tree = private
    src = sources(tree)[10]
    pkg = npm_tarball(tmp_path / "p.tgz", {"lib/x.ts": src})
    text = render_json(scan(pkg, index))
    assert "private-source" in text
    statements = [line.strip() for line in src.splitlines() if "computeShare" in line]
    assert statements and not any(s in text for s in statements)


def test_a_wrong_key_is_a_clear_error(private: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    index, _ = private
    pkg = npm_tarball(tmp_path / "p.tgz", {"a.js": "x\n"})
    options = ScanOptions(fingerprints=(str(index),), fingerprint_key="another-key-" + "y" * 16)
    with pytest.raises(FingerprintError, match="built with key id"):
        scan_artifact(ScanRequest(pkg, options=options))


def test_every_private_file_counts_and_the_paths_are_capped(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    index, tree = private
    files = {f"dist/chunk-{n}.js": text for n, text in enumerate(sources(tree))}
    pkg = npm_tarball(tmp_path / "p.tgz", files)
    finding = private_finding(scan(pkg, index))
    assert finding is not None
    assert finding.evidence["private_files"] == len(files) == 12
    assert len(finding.evidence["paths"]) == 10  # the first paths only
    assert "acme-billing" in finding.message and "12 private source files" in finding.message
