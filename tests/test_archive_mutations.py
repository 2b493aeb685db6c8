"""Damaged archives never crash the scanner: a valid npm tarball, wheel and sdist with bytes flipped,
cut or duplicated at seeded random places always yield a report (with archive-anomaly findings
where the damage shows), never an exception."""

from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path

import pytest

from tests.builders import npm_tarball, raw_tar, sdist, wheel
from watcher.errors import ArchiveError
from watcher.model import Category
from watcher.scanning.scan import ScanRequest, scan_artifact

FILES = {
    "index.js": "module.exports = require('./lib/a');\n" * 50,
    "lib/a.js": "const url = 'https://api.example.com';\n" * 80,
    "dist/app.js.map": json.dumps(
        {
            "version": 3,
            "sources": ["src/a.ts"],
            "sourcesContent": ["export const a = 1;\n" * 40],
            "mappings": "AAAA",
        }
    ),
    ".env": "DEBUG=1\n",
}


ROUNDS = 1500


def _info(name: str, data: str) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.size = len(data.encode())
    return entry


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    kind = rng.choice(["flip", "cut", "splice", "zero"])
    at = rng.randrange(len(out))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "cut":
        del out[at:]
    elif kind == "splice":
        size = rng.randint(1, 512)
        out[at:at] = out[rng.randrange(len(out)) :][:size]
    else:
        out[at : at + rng.randint(1, 64)] = bytes(min(64, len(out) - at))
    return bytes(out)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["tgz", "whl", "sdist", "tar.bz2", "tar.xz", "tar"])
def test_mutated_archives_always_yield_a_report(tmp_path: Path, kind: str) -> None:
    if kind == "tgz":
        original = npm_tarball(tmp_path / "p.tgz", FILES)
    elif kind == "whl":
        original = wheel(tmp_path, FILES)
    elif kind == "sdist":
        original = sdist(tmp_path, FILES)
    else:
        original = raw_tar(
            tmp_path / f"p.{kind}",
            [(_info(f"pkg/{name}", data), data.encode()) for name, data in FILES.items()],
            mode="w:" + kind.removeprefix("tar").lstrip("."),
        )
    data = original.read_bytes()
    rng = random.Random(f"mutations-{kind}")
    damaged = tmp_path / ("damaged" + "".join(original.suffixes))
    reports = 0
    for _ in range(ROUNDS):
        damaged.write_bytes(mutate(data, rng))
        try:
            report = scan_artifact(ScanRequest(damaged))
        except ArchiveError:
            continue  # the magic bytes themselves were destroyed: "not an archive", exit 2
        reports += 1
        for finding in report.findings:
            assert finding.category in Category
        assert report.bytes_read >= 0
    assert reports > ROUNDS * 2 // 3
