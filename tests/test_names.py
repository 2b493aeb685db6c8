"""Names that hide: lookalike traversals, control characters, absurd depth and length are each an
archive-anomaly, and the scan goes on (the member is still read and searched)."""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

import pytest

from tests.fakecreds import POSITIVES
from watcher.model import Category, Severity
from watcher.scanning.scan import ScanRequest, scan_artifact


def entry(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


@pytest.mark.parametrize(
    ("name", "rule", "severity"),
    [
        ("package/\u2025/\u2025/etc/cron.d/x", "archive-name-traversal-lookalike", Severity.MEDIUM),
        (
            "package/\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fx",
            "archive-name-traversal-lookalike",
            Severity.MEDIUM,
        ),
        ("\uff0fetc/passwd", "archive-name-traversal-lookalike", Severity.MEDIUM),
        ("package/README\n.md", "archive-name-control-chars", Severity.MEDIUM),
        ("package/a\x1b[2Jb.js", "archive-name-control-chars", Severity.MEDIUM),
        ("package/" + "d/" * 100 + "f.js", "archive-name-too-deep", Severity.LOW),
        ("package/" + "n" * 1100 + ".js", "archive-name-too-long", Severity.LOW),
    ],
)
def test_hiding_names_are_anomalies_and_the_member_is_still_searched(
    tmp_path: Path, name: str, rule: str, severity: Severity
) -> None:
    positive = POSITIVES["github-token"](random.Random(name))
    path = pax_tar(
        tmp_path / "p.tgz", {"package/package.json": b"{}", name: positive.text.encode()}
    )
    report = scan_artifact(ScanRequest(path))
    hits = [f for f in report.findings if f.rule == rule]
    assert [f.severity for f in hits] == [severity]
    assert hits[0].category is Category.ARCHIVE_ANOMALY
    assert any(f.category is Category.SECRET for f in report.findings)


def pax_tar(path: Path, files: dict[str, bytes]) -> Path:
    """pax headers carry names of any length and any characters, as tar writes them."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info, payload = entry(name, data)
            archive.addfile(info, io.BytesIO(payload))
    return path


@pytest.mark.parametrize(
    "name", ["package/lib/index.js", "package/docs/café.md", "package/i18n/日本語.json"]
)
def test_ordinary_names_raise_nothing(tmp_path: Path, name: str) -> None:
    path = pax_tar(tmp_path / "p.tgz", {name: b"x"})
    report = scan_artifact(ScanRequest(path))
    assert [f.rule for f in report.findings if f.category is Category.ARCHIVE_ANOMALY] == []
