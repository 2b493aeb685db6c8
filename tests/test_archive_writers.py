"""A declared size is never trusted, and every writer survives every report the reader can produce.

Hypothesis builds archives whose headers claim what they like — zip64 sizes up to 2**64-1, tar
base-256 sizes up to 2**88, hostile names, unknown types — and each is scanned for real and its
report written as JSON, SARIF (validated against the official schema) and text. Sizes in reports
are what was read; what a header claimed is evidence, clamped to a signed 64-bit integer.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.cli.render import render_json, render_sarif, render_text
from watcher.model import Category, Report
from watcher.scanning.archive import MAX_DECLARED_SIZE, ArchiveLimits
from watcher.scanning.scan import ScanRequest, compare_with_baseline, scan_artifact

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text("utf-8"))
SARIF = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)
LIMITS = ArchiveLimits(max_member_bytes=1 << 20, max_total_bytes=4 << 20)

names = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(
        [
            "package/../../etc/passwd",
            "package/\u2025/x",  # two-dot leader
            "package/\uff0e\uff0e\uff0fx",  # fullwidth dots and solidus
            "package\\..\\x",
            "package/a\nb",
            "package/" + "d/" * 600 + "f",
            "package/" + "n" * 1100,
        ]
    ),
)


def zip64_with_claims(path: Path, name: str, file_size: int, compress_size: int) -> Path:
    """A stored one-member zip whose central directory claims zip64 sizes it does not have."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("package/a.txt", b"hello")
    data = bytearray(buffer.getvalue())
    cd = data.find(b"PK\x01\x02")
    eocd = data.find(b"PK\x05\x06")
    fixed = data[cd : cd + 46]
    encoded = name.encode("utf-8", "surrogatepass")[:200]
    extra = struct.pack("<HHQQ", 0x0001, 16, file_size, compress_size)
    struct.pack_into("<II", fixed, 20, 0xFFFFFFFF, 0xFFFFFFFF)
    struct.pack_into("<HHH", fixed, 28, len(encoded), len(extra), 0)
    fixed[8:10] = struct.pack("<H", struct.unpack("<H", fixed[8:10])[0] | 0x800)  # UTF-8 names
    record = bytes(fixed) + encoded + extra
    head = bytes(data[:cd])
    end = bytearray(data[eocd : eocd + 22])
    struct.pack_into("<I", end, 12, len(record))  # central directory size
    path.write_bytes(head + record + bytes(end))
    return path


def tar_with_claims(path: Path, name: str, size: int, kind: bytes) -> Path:
    """A gzip tar whose one header claims `size` in base-256, followed by only 512 bytes."""
    header = bytearray(512)
    raw_name = name.encode("utf-8", "surrogatepass")[:99]
    header[0 : len(raw_name)] = raw_name
    header[100:108] = b"0000644\x00"
    header[108:116] = b"0000000\x00"
    header[116:124] = b"0000000\x00"
    header[124:136] = b"\x80" + size.to_bytes(11, "big")
    header[136:148] = b"00000000000\x00"
    header[156:157] = kind
    header[257:263] = b"ustar\x00"
    header[263:265] = b"00"
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\x00 ".encode()
    body = bytes(header) + b"x" * 512 + bytes(1024)
    path.write_bytes(zlib.compress(body, wbits=31))
    return path


def write_everything(report: Report) -> None:
    """Every writer, on the report as scanned and as compared with itself as the baseline."""
    for each in (report, compare_with_baseline(report, report.manifest, report.target)):
        document = json.loads(render_json(each))
        assert isinstance(document["findings"], list)
        SARIF.validate(json.loads(render_sarif(each)))
        assert render_text(each)
        for finding in each.findings:
            declared = finding.evidence.get("declared_size")
            assert declared is None or 0 <= declared <= MAX_DECLARED_SIZE


common = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@common
@given(
    name=names,
    file_size=st.one_of(st.integers(0, 2**64 - 1), st.just(2**64 - 1)),
    compress_size=st.integers(0, 2**64 - 1),
)
def test_zip64_claims_are_clamped_and_written(
    tmp_path: Path, name: str, file_size: int, compress_size: int
) -> None:
    path = zip64_with_claims(tmp_path / "claims.whl", name, file_size, compress_size)
    report = scan_artifact(ScanRequest(path, limits=LIMITS))
    # what was read, never what was claimed
    assert report.target.bytes <= LIMITS.max_total_bytes
    assert all(entry.size <= LIMITS.max_member_bytes for entry in report.manifest.files.values())
    write_everything(report)


@common
@given(
    name=names,
    size=st.integers(0, 2**88 - 1),
    kind=st.sampled_from([b"0", b"\x00", b"7", b"5", b"S", b"Z", b"3"]),
)
def test_tar_base256_claims_are_clamped_and_written(
    tmp_path: Path, name: str, size: int, kind: bytes
) -> None:
    path = tar_with_claims(tmp_path / "claims.tgz", name, size, kind)
    report = scan_artifact(ScanRequest(path, limits=LIMITS))
    assert report.target.bytes <= 1536  # all that follows the header
    write_everything(report)


def test_absurd_zip64_size_is_a_clamped_anomaly_not_a_crash(tmp_path: Path) -> None:
    path = zip64_with_claims(tmp_path / "huge.whl", "package/huge.bin", 2**64 - 1, 5)
    report = scan_artifact(ScanRequest(path, limits=LIMITS))
    anomalies = [f for f in report.findings if f.category is Category.ARCHIVE_ANOMALY]
    assert anomalies, "a member claiming 16 EiB is an archive-anomaly"
    claimed = [f.evidence["declared_size"] for f in anomalies if "declared_size" in f.evidence]
    assert claimed == [MAX_DECLARED_SIZE]
    assert report.target.bytes == 0
    write_everything(report)


def test_tar_claiming_more_than_it_holds_is_corrupt_and_written(tmp_path: Path) -> None:
    path = tar_with_claims(tmp_path / "short.tgz", "package/index.js", 2**80, b"0")
    report = scan_artifact(ScanRequest(path, limits=LIMITS))
    rules = {f.rule for f in report.findings}
    assert "archive-member-too-large" in rules
    assert "archive-corrupt" in rules  # the claimed content is not there
    write_everything(report)


def test_stdlib_tar_still_reads(tmp_path: Path) -> None:
    # the claims builders above are hand-made; a tarfile-written archive is read normally
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("package/index.js")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"x=1"))
    path = tmp_path / "ok.tgz"
    path.write_bytes(buffer.getvalue())
    report = scan_artifact(ScanRequest(path, limits=LIMITS))
    assert report.manifest.files["package/index.js"].size == 3
    write_everything(report)
