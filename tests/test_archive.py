"""The archive reader on normal and hostile input: every oddity is an archive-anomaly finding, the
read stays within its limits, and nothing is written to disk."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.builders import gzip_of_zeros_tar, npm_tarball, raw_tar, wheel
from watcher.errors import ArchiveError
from watcher.model import Category, MemberKind
from watcher.scanning.archive import ArchiveLimits, ArchiveReader

MiB = 1024 * 1024


def read_all(path: Path, limits: ArchiveLimits | None = None) -> tuple[ArchiveReader, list]:
    reader = ArchiveReader(path, limits)
    return reader, list(reader.members())


def rules(reader: ArchiveReader) -> set[str]:
    assert all(f.category is Category.ARCHIVE_ANOMALY for f in reader.anomalies)
    return {f.rule for f in reader.anomalies}


def info(
    name: str, *, type_: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = ""
) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.type = type_
    entry.size = size
    entry.linkname = linkname
    return entry


def test_reads_npm_tarball_members_with_content(tmp_path: Path) -> None:
    path = npm_tarball(tmp_path / "p.tgz", {"index.js": "module.exports = 1;\n", "lib/a.js": b"x"})
    reader, members = read_all(path)
    assert [m.path for m in members] == [
        "package/package.json",
        "package/index.js",
        "package/lib/a.js",
    ]
    assert members[1].data == b"module.exports = 1;\n"
    assert reader.anomalies == []
    assert reader.bytes_read >= sum(m.size for m in members)


def test_reads_wheel_zip(tmp_path: Path) -> None:
    path = wheel(tmp_path, {"demo_pkg/__init__.py": "X = 1\n"})
    reader, members = read_all(path)
    assert reader.format == "zip"
    assert any(m.path == "demo_pkg/__init__.py" and m.data == b"X = 1\n" for m in members)
    assert reader.anomalies == []


@pytest.mark.parametrize("mode", ["w:bz2", "w:xz", "w:"])
def test_reads_other_tar_compressions(tmp_path: Path, mode: str) -> None:
    path = raw_tar(tmp_path / "a.tar", [(info("pkg/a.txt", size=5), b"hello")], mode=mode)
    reader, members = read_all(path)
    assert members[0].data == b"hello"
    assert reader.anomalies == []


def test_not_an_archive_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just text")
    with pytest.raises(ArchiveError, match="not a tar"):
        ArchiveReader(path)
    with pytest.raises(ArchiveError, match="no such file"):
        ArchiveReader(tmp_path / "missing.tgz")


def test_path_traversal_and_absolute_names_are_reported_not_extracted(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = raw_tar(
        work / "evil.tgz",
        [
            (info("../escape.txt", size=3), b"abc"),
            (info("/etc/evil.conf", size=3), b"abc"),
            (info("package/ok.js", size=1), b"x"),
        ],
    )
    reader, members = read_all(path)
    traversal = [f for f in reader.anomalies if f.rule == "archive-path-traversal"]
    assert {f.path for f in traversal} == {"../escape.txt", "/etc/evil.conf"}
    assert all(f.severity.value == "high" for f in traversal)
    # Content is still inspected, and nothing was written next to the archive or above it.
    assert members[0].data == b"abc"
    assert not (tmp_path / "escape.txt").exists()
    assert sorted(p.name for p in work.iterdir()) == ["evil.tgz"]


def test_links_and_devices_are_anomalies(tmp_path: Path) -> None:
    path = raw_tar(
        tmp_path / "links.tgz",
        [
            (info("package/passwd", type_=tarfile.SYMTYPE, linkname="/etc/passwd"), None),
            (info("package/local", type_=tarfile.SYMTYPE, linkname="index.js"), None),
            (info("package/hard", type_=tarfile.LNKTYPE, linkname="package/index.js"), None),
            (info("package/dev", type_=tarfile.CHRTYPE), None),
        ],
    )
    reader, members = read_all(path)
    kinds = {m.path: m.kind for m in members}
    assert kinds == {
        "package/passwd": MemberKind.SYMLINK,
        "package/local": MemberKind.SYMLINK,
        "package/hard": MemberKind.HARDLINK,
        "package/dev": MemberKind.DEVICE,
    }
    by_path = {f.path: f for f in reader.anomalies}
    assert by_path["package/passwd"].severity.value == "high"  # escapes the package
    assert by_path["package/local"].severity.value == "medium"
    assert by_path["package/dev"].rule == "archive-special-file"


def test_duplicate_names_are_reported(tmp_path: Path) -> None:
    path = raw_tar(
        tmp_path / "dup.tgz",
        [(info("package/a.js", size=1), b"1"), (info("package/a.js", size=1), b"2")],
    )
    reader, members = read_all(path)
    assert [m.data for m in members] == [b"1", b"2"]  # both copies are scanned
    assert rules(reader) == {"archive-duplicate-member"}


def test_member_over_the_size_limit_is_listed_but_not_read(tmp_path: Path) -> None:
    path = npm_tarball(tmp_path / "big.tgz", {"big.js": b"a" * 4096, "small.js": b"b"})
    reader, members = read_all(path, ArchiveLimits(max_member_bytes=1024))
    big = next(m for m in members if m.path == "package/big.js")
    # what was read is its size; what the header claimed is evidence
    assert big.data is None and big.size == 0 and big.declared_size == 4096
    assert next(m for m in members if m.path == "package/small.js").data == b"b"
    assert rules(reader) == {"archive-member-too-large"}


def test_member_count_limit_stops_the_read(tmp_path: Path) -> None:
    path = npm_tarball(tmp_path / "many.tgz", {f"f{i}.js": b"x" for i in range(30)})
    reader, members = read_all(path, ArchiveLimits(max_members=10))
    assert len(members) == 10
    assert rules(reader) == {"archive-too-many-members"}


@pytest.mark.timeout(60)
def test_gzip_bomb_is_stopped_by_ratio_within_bounded_memory(tmp_path: Path) -> None:
    """1 GiB of zeros (about 1 MiB compressed): reported as a bomb, read stopped early, and the
    scanning process stays small. Measured in a child process so the figure is its own."""
    bomb = gzip_of_zeros_tar(tmp_path / "bomb.tgz", 1024 * MiB)
    assert bomb.stat().st_size < 4 * MiB
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from watcher.scanning.scan import ScanRequest, scan\n"
        "report = scan(ScanRequest(Path(sys.argv[1])))\n"
        "print(json.dumps({'rules': sorted({f.rule for f in report.findings}),"
        " 'bytes_read': report.bytes_read,"
        # VmHWM is this process's own peak: ru_maxrss also counts the parent (pytest) across the
        # vfork + exec that started it
        " 'maxrss_kib': int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))"
        ".split()[1])}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, check=True
    )
    figures = json.loads(result.stdout)
    assert "archive-compression-bomb" in figures["rules"]
    assert "archive-member-too-large" in figures["rules"]
    assert figures["bytes_read"] < 512 * MiB  # stopped long before inflating the gigabyte
    assert figures["maxrss_kib"] < 200 * 1024


def test_total_size_limit_stops_the_read(tmp_path: Path) -> None:
    files = {f"f{i}.bin": bytes(range(256)) * 4096 for i in range(4)}  # 1 MiB each
    path = npm_tarball(tmp_path / "t.tgz", files)
    reader, members = read_all(path, ArchiveLimits(max_total_bytes=2 * MiB, max_ratio=1e9))
    assert "archive-size-limit" in rules(reader)
    assert len(members) < 5


def test_truncated_archive_keeps_what_was_read(tmp_path: Path) -> None:
    files = {
        f"f{i}.js": (f"// file {i}\n" * 2000).encode() + bytes(range(256)) * 64 for i in range(20)
    }
    path = npm_tarball(tmp_path / "full.tgz", files)
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    reader, members = read_all(cut)
    assert "archive-corrupt" in rules(reader)
    assert 1 <= len(members) < 21
    assert all(m.data is not None and len(m.data) == m.size for m in members)


def test_corrupt_gzip_body_is_an_anomaly_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "junk.tgz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8)
    reader, members = read_all(path)
    assert members == []
    assert rules(reader) == {"archive-corrupt"}


def test_concatenated_gzip_members_are_read_as_one_stream(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"hello"
        entry = info("package/a.txt", size=len(data))
        archive.addfile(entry, io.BytesIO(data))
    raw = buffer.getvalue()
    path = tmp_path / "concat.tgz"
    path.write_bytes(gzip.compress(raw[:512]) + gzip.compress(raw[512:]))
    reader, members = read_all(path)
    assert members[0].data == b"hello"
    assert reader.anomalies == []


def test_oversized_pax_header_is_refused(tmp_path: Path) -> None:
    entry = info("package/a.txt", size=1)
    entry.pax_headers = {"comment": "x" * (2 * MiB)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(entry, io.BytesIO(b"1"))
    path = tmp_path / "pax.tgz"
    path.write_bytes(gzip.compress(buffer.getvalue()))
    reader, members = read_all(path)
    assert members == []
    assert rules(reader) == {"archive-corrupt"}


def test_zip_bomb_entry_is_not_inflated(tmp_path: Path) -> None:
    path = tmp_path / "bomb.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", bytes(64 * MiB))
        archive.writestr("ok.py", "x = 1\n")
    reader, members = read_all(path, ArchiveLimits(ratio_floor_bytes=MiB))
    zeros = next(m for m in members if m.path == "zeros.bin")
    assert zeros.data is None
    assert "archive-compression-bomb" in rules(reader)
    assert next(m for m in members if m.path == "ok.py").data == b"x = 1\n"


def test_overlapping_zip_entries_are_detected(tmp_path: Path) -> None:
    """The non-recursive zip bomb: central-directory entries sharing one local file's data."""
    path = tmp_path / "overlap.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.txt", "A" * 1000)
        archive.writestr("b.txt", "B" * 1000)
    raw = bytearray(path.read_bytes())
    central = raw.rfind(b"PK\x01\x02")  # b.txt's central record (the last one)
    struct.pack_into("<I", raw, central + 42, 0)  # point it at a.txt's local header
    path.write_bytes(bytes(raw))
    reader, members = read_all(path)
    assert "archive-compression-bomb" in rules(reader)
    assert next(m for m in members if m.path == "b.txt").data is None


def test_zip_symlink_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        entry = zipfile.ZipInfo("pkg/link")
        entry.external_attr = 0o120777 << 16
        archive.writestr(entry, "../../etc/passwd")
    reader, members = read_all(path)
    assert members[0].kind is MemberKind.SYMLINK
    assert members[0].link_target == "../../etc/passwd"
    assert rules(reader) == {"archive-link"}


def test_unreadable_zip_is_an_anomaly(tmp_path: Path) -> None:
    path = tmp_path / "broken.whl"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    reader, members = read_all(path)
    assert members == []
    assert rules(reader) == {"archive-corrupt"}


def test_archive_digest_is_of_the_whole_file_even_when_reading_stops_early(tmp_path: Path) -> None:
    """The file is read once: its sha256 comes from the same pass, trailing bytes included."""
    full = npm_tarball(tmp_path / "p.tgz", {f"f{i}.js": b"x" * 100 for i in range(30)})
    stopped = ArchiveReader(full, ArchiveLimits(max_members=3))
    list(stopped.members())
    whole = ArchiveReader(full)
    list(whole.members())
    zipped = wheel(tmp_path, {"a.py": "1"})
    zip_reader = ArchiveReader(zipped)
    list(zip_reader.members())
    assert stopped.sha256 == whole.sha256 == hashlib.sha256(full.read_bytes()).hexdigest()
    assert zip_reader.sha256 == hashlib.sha256(zipped.read_bytes()).hexdigest()
