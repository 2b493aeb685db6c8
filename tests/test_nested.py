"""Archives inside the artifact are opened: findings carry a path through the layers
(`package/acme-1.2.2.tgz!package/.env`), the outer limits apply to the whole tree, a nested package
tarball is `unexpected-content`, a bomb inside is an `archive-anomaly`, and each layer's bytes are
inflated once."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
import zipfile
from pathlib import Path

from tests.builders import gzip_of_zeros_tar, npm_tarball, wheel
from tests.fakecreds import POSITIVES
from watcher.model import Category, Report, Severity
from watcher.scanning.archive import ArchiveLimits, ArchiveReader
from watcher.scanning.scan import ScanRequest, scan_artifact

MiB = 1024 * 1024


def github(seed: str) -> tuple[str, str]:
    positive = POSITIVES["github-token"](random.Random(seed))
    return positive.text, positive.secret


def scan(path: Path, limits: ArchiveLimits | None = None) -> Report:
    return scan_artifact(ScanRequest(path, limits=limits or ArchiveLimits()))


def secrets_at(report: Report) -> dict[str, str]:
    return {f.path: f.rule for f in report.findings if f.category is Category.SECRET}


def by_rule(report: Report, rule: str) -> list:
    return [f for f in report.findings if f.rule == rule]


def test_earlier_npm_pack_in_the_root_is_opened_and_flagged(tmp_path: Path) -> None:
    text, _ = github("nested-env")
    inner = npm_tarball(tmp_path / "acme-1.2.2.tgz", {".env": text}, name="acme", version="1.2.2")
    outer = npm_tarball(
        tmp_path / "acme-1.2.3.tgz",
        {"index.js": "module.exports = 1;\n", "acme-1.2.2.tgz": inner.read_bytes()},
        name="acme",
        version="1.2.3",
    )
    report = scan(outer)
    assert secrets_at(report) == {"package/acme-1.2.2.tgz!package/.env": "github-token"}
    (nested,) = by_rule(report, "nested-package-archive")
    assert nested.category is Category.UNEXPECTED_CONTENT
    assert nested.path == "package/acme-1.2.2.tgz"
    assert nested.severity is Severity.HIGH  # it carries a finding
    assert nested.evidence["findings_inside"] == 2  # the token and the .env file itself
    # the outer identity is not taken from the nested package.json
    assert (report.target.name, report.target.version) == ("acme", "1.2.3")
    assert "package/acme-1.2.2.tgz!package/.env" in report.manifest.files


def test_clean_nested_package_is_medium_and_a_plain_zip_is_no_package(tmp_path: Path) -> None:
    inner = npm_tarball(tmp_path / "old.tgz", {"index.js": "x = 1\n"})
    assets = io.BytesIO()
    with zipfile.ZipFile(assets, "w") as archive:
        archive.writestr("icons/readme.txt", "icons\n")
    outer = npm_tarball(
        tmp_path / "p.tgz", {"old.tgz": inner.read_bytes(), "assets.zip": assets.getvalue()}
    )
    report = scan(outer)
    (nested,) = by_rule(report, "nested-package-archive")
    assert (nested.path, nested.severity) == ("package/old.tgz", Severity.MEDIUM)
    assert "package/assets.zip!icons/readme.txt" in report.manifest.files


def test_jar_inside_a_wheel_and_a_gzipped_file_are_searched(tmp_path: Path) -> None:
    jar_text, _ = github("in-jar")
    gz_text, _ = github("in-gz")
    jar = io.BytesIO()
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config/app.properties", jar_text)
    path = wheel(
        tmp_path,
        {
            "demo_pkg/__init__.py": "",
            "demo_pkg/lib/tool.jar": jar.getvalue(),
            "demo_pkg/notes.txt.gz": gzip.compress(gz_text.encode()),
        },
    )
    found = secrets_at(scan(path))
    assert found == {
        "demo_pkg/lib/tool.jar!config/app.properties": "github-token",
        "demo_pkg/notes.txt.gz!notes.txt": "github-token",
    }


def nest(tmp_path: Path, depth: int, leaf: dict[str, str]) -> Path:
    """`depth` tarballs, each inside the next; the innermost holds `leaf`."""
    path = npm_tarball(tmp_path / "level0.tgz", leaf)
    for level in range(1, depth + 1):
        path = npm_tarball(tmp_path / f"level{level}.tgz", {f"l{level - 1}.tgz": path.read_bytes()})
    return path


def test_nesting_stops_at_max_nesting_with_an_anomaly(tmp_path: Path) -> None:
    text, _ = github("deep")
    deep = nest(tmp_path, 4, {"config.js": text})  # the secret is 4 levels in
    report = scan(deep)  # default max_nesting 3
    assert secrets_at(report) == {}
    (limit,) = by_rule(report, "archive-nesting-limit")
    assert limit.path == "package/l3.tgz!package/l2.tgz!package/l1.tgz!package/l0.tgz"
    assert limit.severity is Severity.LOW

    found = secrets_at(scan(deep, ArchiveLimits(max_nesting=4)))
    assert list(found) == [
        "package/l3.tgz!package/l2.tgz!package/l1.tgz!package/l0.tgz!package/config.js"
    ]
    off = scan(deep, ArchiveLimits(max_nesting=0))
    assert [f.path for f in by_rule(off, "archive-nesting-limit")] == ["package/l3.tgz"]


def test_bomb_inside_a_nested_archive_is_an_anomaly_and_the_scan_goes_on(tmp_path: Path) -> None:
    bomb = gzip_of_zeros_tar(tmp_path / "bomb.tgz", 64 * MiB)
    text, _ = github("after-bomb")
    outer = npm_tarball(tmp_path / "p.tgz", {"a/bomb.tgz": bomb.read_bytes(), "z.js": text})
    report = scan(outer, ArchiveLimits(ratio_floor_bytes=MiB))
    bombs = by_rule(report, "archive-compression-bomb")
    assert bombs
    assert all(f.path.startswith("package/a/bomb.tgz!") for f in bombs)
    assert report.bytes_read < 64 * MiB  # stopped well before inflating it


def test_outer_total_limit_applies_to_the_whole_tree(tmp_path: Path) -> None:
    rng = random.Random(7)
    noise = bytes(rng.getrandbits(8) for _ in range(600_000))  # incompressible
    inner = npm_tarball(tmp_path / "i.tgz", {"a.bin": noise, "b.bin": noise[::-1]})
    outer = npm_tarball(tmp_path / "o.tgz", {"i.tgz": inner.read_bytes(), "later.js": "x"})
    report = scan(outer, ArchiveLimits(max_total_bytes=2 * MiB))
    (limit,) = by_rule(report, "archive-size-limit")
    assert limit.path.startswith("package/i.tgz!")
    assert "package/later.js" not in report.manifest.files  # the whole tree stopped


def test_member_count_limit_counts_nested_members(tmp_path: Path) -> None:
    inner = npm_tarball(tmp_path / "i.tgz", {f"f{n}.js": "x" for n in range(20)})
    outer = npm_tarball(tmp_path / "o.tgz", {"i.tgz": inner.read_bytes()})
    report = scan(outer, ArchiveLimits(max_members=10))
    assert by_rule(report, "archive-too-many-members")
    assert len(report.manifest.files) <= 10


def test_ten_nested_tarballs_cost_their_bytes_once(tmp_path: Path) -> None:
    inners = {}
    inflated = 0
    for n in range(10):
        inner = npm_tarball(tmp_path / f"i{n}.tgz", {f"f{n}.js": f"// {n}\n" * 20_000})
        inners[f"vendor/i{n}.tgz"] = inner.read_bytes()
        with gzip.open(inner) as handle:
            inflated += len(handle.read())
    outer = npm_tarball(tmp_path / "o.tgz", inners)
    with gzip.open(outer) as handle:
        outer_inflated = len(handle.read())
    reader = ArchiveReader(outer)
    members = list(reader.members())
    # every layer inflated exactly once: the outer tar, then each nested tar from its bytes
    assert reader.bytes_read == outer_inflated + inflated
    paths = [m.path for m in members]
    assert len(paths) == len(set(paths))
    assert sum("!" in p for p in paths) == 20  # package.json + one file in each


def _traversal_tar() -> bytes:
    """A plain tar (mode w) with a `..` member and an absolute one: what a test suite of a safe
    extractor ships on purpose (Django's tests/utils_tests/traversal_archives/)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in ("foo/../../evil.py", "/tmp/evil.py"):
            member = tarfile.TarInfo(name)
            member.size = 1
            archive.addfile(member, io.BytesIO(b"x"))
    return buffer.getvalue()


def test_fixture_archives_in_the_package_tests_are_low_and_elsewhere_keep_their_severity(
    tmp_path: Path,
) -> None:
    fixture = npm_tarball(tmp_path / "fixture.tgz", {"index.js": "x = 1\n"})
    outer = npm_tarball(
        tmp_path / "p.tgz",
        {
            "tests/fixtures/traversal.tar": _traversal_tar(),
            "tests/eggs/fixture.tgz": fixture.read_bytes(),
            "lib/bundled.tar": _traversal_tar(),
        },
    )
    report = scan(outer)
    traversal = {f.path: f for f in by_rule(report, "archive-path-traversal")}
    in_tests = [f for path, f in traversal.items() if path.startswith("package/tests/")]
    elsewhere = [f for path, f in traversal.items() if path.startswith("package/lib/")]
    assert len(in_tests) == 2 and len(elsewhere) == 2, sorted(traversal)
    assert all(f.severity is Severity.LOW and f.evidence["in_test_path"] for f in in_tests)
    assert all(f.severity is Severity.HIGH for f in elsewhere), "outside tests: still high"
    (nested,) = by_rule(report, "nested-package-archive")
    assert (nested.path, nested.severity) == ("package/tests/eggs/fixture.tgz", Severity.LOW)


def test_a_nested_package_carrying_only_low_findings_stays_medium(tmp_path: Path) -> None:
    inner = npm_tarball(
        tmp_path / "old.tgz", {"build.js": "const out = '/home/alice/work/acme/dist';\n"}
    )
    outer = npm_tarball(tmp_path / "p.tgz", {"old.tgz": inner.read_bytes()})
    report = scan(outer)
    inside = [f for f in report.findings if f.path.startswith("package/old.tgz!")]
    assert inside and all(f.severity.rank <= Severity.LOW.rank for f in inside), inside
    (nested,) = by_rule(report, "nested-package-archive")
    assert nested.severity is Severity.MEDIUM and nested.evidence["findings_inside"] == 0


def test_a_small_compressed_file_costs_its_own_size_not_the_member_limit(tmp_path: Path) -> None:
    """A `.json.gz` of a few KB is read into a buffer of its size: botocore ships ~400 of them,
    and a zeroed buffer of the whole member limit each (256 MiB by default) took minutes."""
    import tracemalloc  # noqa: PLC0415

    path = wheel(
        tmp_path,
        {"demo_pkg/__init__.py": "", "demo_pkg/data/service-2.json.gz": gzip.compress(b"{}" * 999)},
    )
    limits = ArchiveLimits(max_member_bytes=512 * MiB)
    scan(path)  # rules and engines built (cached) before memory is traced
    tracemalloc.start()
    try:
        report = scan(path, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "demo_pkg/data/service-2.json.gz!service-2.json" in report.manifest.files
    assert peak < 64 * MiB, f"peak {peak / MiB:.0f} MiB for a 2 KB member"
