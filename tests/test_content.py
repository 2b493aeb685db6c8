"""Text that is not UTF-8, .pyc constants, printable strings of binaries and source maps under any
name are searched; binaries only by checksummed and fixed-prefix rules. All built at test time."""

from __future__ import annotations

import gzip
import importlib.util
import json
import marshal
import os
import random
from pathlib import Path

import brotli
import pytest

from tests.builders import npm_tarball, wheel
from tests.fakecreds import POSITIVES
from watcher.model import Category, Report
from watcher.scanning.extract import pyc_strings
from watcher.scanning.scan import ScanRequest, scan_artifact


def token(seed: str) -> str:
    return POSITIVES["github-token"](random.Random(seed)).secret


def scan(path: Path) -> Report:
    return scan_artifact(ScanRequest(path))


def secrets(report: Report) -> dict[str, str]:
    return {f.path: f.rule for f in report.findings if f.category is Category.SECRET}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_text_is_searched(tmp_path: Path, encoding: str) -> None:
    text = f'const auth = "{token(encoding)}";\n'
    path = npm_tarball(tmp_path / "p.tgz", {"lib/auth.js": text.encode(encoding)})
    report = scan(path)
    (finding,) = [f for f in report.findings if f.rule == "github-token"]
    assert finding.path == "package/lib/auth.js"
    assert finding.evidence["text_origin"].startswith("utf-16")


def test_latin1_text_is_searched_and_utf8_is_not_tagged(tmp_path: Path) -> None:
    latin = f"# caf\xe9\nGITHUB_TOKEN={token('latin')}\n".encode("latin-1")
    plain = f"GITHUB_TOKEN={token('plain')}\n"
    path = npm_tarball(tmp_path / "p.tgz", {"a.conf": latin, "b.conf": plain})
    by_path = {f.path: f for f in scan(path).findings if f.rule == "github-token"}
    assert by_path["package/a.conf"].evidence["text_origin"] == "latin-1"
    assert "text_origin" not in by_path["package/b.conf"].evidence


def compiled(source: str) -> bytes:
    """A real .pyc of this interpreter: 16-byte header + marshal of the code object (marshal.dumps
    of our own trusted code; the scanner never loads marshal data)."""
    code = compile(source, "/home/builder/acme/settings.py", "exec")
    return importlib.util.MAGIC_NUMBER + b"\x00" * 12 + marshal.dumps(code)


def test_pyc_string_constants_are_searched(tmp_path: Path) -> None:
    secret = token("pyc")
    data = compiled(f"def connect():\n    return {{'auth': '{secret}', 'n': 3}}\n")
    walked = pyc_strings(data)
    assert walked is not None and walked.complete
    assert secret in walked.strings
    path = wheel(tmp_path, {"acme/__pycache__/settings.cpython-311.pyc": data})
    report = scan(path)
    (finding,) = [f for f in report.findings if f.rule == "github-token"]
    assert finding.evidence["text_origin"] == "pyc-strings"


def test_truncated_or_foreign_pyc_is_no_crash(tmp_path: Path) -> None:
    data = compiled("X = 'a string constant here'\n")
    assert pyc_strings(data[:40]) is not None  # walked as far as it goes
    assert pyc_strings(b"not a pyc at all") is None
    assert pyc_strings(data[:16] + os.urandom(64)) is not None


def binary_with(payload: bytes) -> bytes:
    rng = random.Random(1)
    noise = bytes(rng.getrandbits(8) for _ in range(64 * 1024))
    return b"\x7fELF\x02\x01\x01" + noise[:30000] + b"\x00" + payload + b"\x00" + noise[30000:]


def test_binary_strings_find_prefixed_tokens_only(tmp_path: Path) -> None:
    secret = token("binary")
    generic = b'password = "Xk39fjQ2mzPw81Lq"'
    files = {
        "bin/tool": binary_with(b"auth=" + secret.encode()),
        "bin/other": binary_with(generic),
        "img/logo.png": b"\x89PNG\r\n\x1a\n" + binary_with(secret.encode()),
    }
    report = scan(npm_tarball(tmp_path / "p.tgz", files))
    found = secrets(report)
    assert found == {"package/bin/tool": "github-token", "package/img/logo.png": "github-token"}
    origins = {f.evidence.get("text_origin") for f in report.findings if f.rule == "github-token"}
    assert origins == {"binary-strings"}


def a_map(secret: str, *, mappings_last: bool = True) -> bytes:
    content = f'export const key = "{secret}";\n'
    doc: dict[str, object] = {
        "version": 3,
        "sources": ["../src/key.ts"],
        "sourcesContent": [content],
    }
    if mappings_last:
        doc["mappings"] = "AAAA"
    else:
        doc = {"version": 3, "mappings": "AAAA", **doc}
    return json.dumps(doc).encode()


def test_source_maps_by_content_by_reference_and_compressed(tmp_path: Path) -> None:
    files: dict[str, bytes | str] = {
        # named by a sourceMappingURL, whatever it is called
        "dist/a.js": "x();\n//# sourceMappingURL=a.debuginfo\n",
        "dist/a.debuginfo": a_map(token("by-url")),
        # a map by its content, `mappings` after a long sourcesContent
        "dist/b.json": a_map(token("by-content")),
        # gzip by its magic bytes, brotli by its suffix
        "dist/c.js.map.gz": gzip.compress(a_map(token("gzip"))),
        "dist/d.js.map.br": brotli.compress(a_map(token("brotli"))),
    }
    report = scan(npm_tarball(tmp_path / "p.tgz", files))
    found = {p.split(" → ")[0] for p, rule in secrets(report).items() if rule == "github-token"}
    assert found == {
        "package/dist/a.debuginfo",
        "package/dist/b.json",
        "package/dist/c.js.map.gz!c.js.map",
        "package/dist/d.js.map.br",
    }
    maps = {f.path for f in report.findings if f.category is Category.SOURCE_MAP}
    assert "package/dist/a.debuginfo" in maps
    assert "package/dist/d.js.map.br" in maps


def test_maps_are_read_whatever_the_order_of_the_members(tmp_path: Path) -> None:
    # each map comes before the file whose sourceMappingURL names it
    late_keys = {
        "names": [f"identifier{i}" for i in range(2000)],  # `version` and `mappings` far in
        "sources": ["../src/late.ts"],
        "sourcesContent": [f'export const key = "{token("late-keys")}";\n'],
        "mappings": "AAAA",
        "version": 3,
    }
    files: dict[str, bytes | str] = {
        "dist/late.debug": json.dumps(late_keys),
        # brotli under a name that says nothing: known by what its first bytes inflate to
        "dist/e.js.map.compressed": brotli.compress(a_map(token("brotli-by-url"))),
        "dist/late.js": "x();\n//# sourceMappingURL=late.debug\n",
        "dist/e.js": "y();\n//# sourceMappingURL=e.js.map.compressed\n",
        # and one no file names at all
        "dist/f.bin": brotli.compress(a_map(token("brotli-unnamed"), mappings_last=False)),
    }
    report = scan(npm_tarball(tmp_path / "p.tgz", files))
    found = {p.split(" → ")[0] for p, rule in secrets(report).items() if rule == "github-token"}
    assert found == {
        "package/dist/late.debug",
        "package/dist/e.js.map.compressed",
        "package/dist/f.bin",
    }
    # read as a map (its embedded source named), not only searched as JSON text
    assert "package/dist/late.debug → ../src/late.ts" in secrets(report)
    maps = {f.path for f in report.findings if f.category is Category.SOURCE_MAP}
    assert {
        "package/dist/late.debug",
        "package/dist/e.js.map.compressed",
        "package/dist/f.bin",
    } <= maps


def test_binaries_that_are_not_brotli_maps_stay_binaries(tmp_path: Path) -> None:
    rng = random.Random(7)
    files: dict[str, bytes | str] = {
        "bin/tool": b"\x7fELF" + bytes(rng.randrange(256) for _ in range(4096)),
        "data/blob.br": brotli.compress(b"\x00\x01 not a map " * 100),
    }
    report = scan(npm_tarball(tmp_path / "p.tgz", files))
    assert not [f for f in report.findings if f.category is Category.SOURCE_MAP]


def test_plain_json_is_not_a_source_map(tmp_path: Path) -> None:
    report = scan(npm_tarball(tmp_path / "p.tgz", {"data.json": '{"version": 3, "items": []}'}))
    assert not [f for f in report.findings if f.category is Category.SOURCE_MAP]
