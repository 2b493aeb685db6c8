"""The stdlib paths that run where a wheel is missing: zlib instead of ISA-L (`isal`) for
inflating, `re` instead of hyperscan for the needle pass (no gates then). A scan in a process where
neither wheel can be imported reports what the wheels' scan reports, for a tarball with
credentials, a source map, text that is not ASCII and a truncated stream."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from tests.builders import npm_tarball
from tests.fakecreds import POSITIVES
from watcher.scanning import inflate
from watcher.scanning.checks.secrets import default_rules
from watcher.scanning.scan import ScanRequest, scan_artifact

# run in a fresh interpreter: the wheels are made unimportable before watcher is imported
_WITHOUT_WHEELS = """
import json, sys
sys.modules["isal"] = None
sys.modules["hyperscan"] = None
from pathlib import Path
from watcher.scanning import inflate
from watcher.scanning.checks.secrets import default_rules
from watcher.scanning.scan import ScanRequest, scan_artifact
report = scan_artifact(ScanRequest(Path(sys.argv[1])))
print(json.dumps({
    "inflate": inflate._inflate.__name__,
    "needles": default_rules().engine,
    "findings": sorted([f.rule, f.path, f.line, f.severity.value] for f in report.findings),
    "bytes_read": report.bytes_read,
}))
"""


def _leaky_tarball(tmp_path: Path) -> Path:
    rng = random.Random("fallbacks")
    texts = {
        rule: POSITIVES[rule](rng) for rule in ("github-token", "generic-secret", "url-basic-auth")
    }
    smap = {
        "version": 3,
        "sources": ["../src/a.ts"],
        "sourcesContent": ["const é = 1;\n" + texts["generic-secret"].text],
        "mappings": "AAAA",
    }
    return npm_tarball(
        tmp_path / "leaky-1.0.0.tgz",
        {
            "index.js": "// café ☃\n" + texts["github-token"].text,
            "lib/db.js": texts["url-basic-auth"].text,
            "index.js.map": json.dumps(smap),
        },
    )


def _without_wheels(path: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_WHEELS, str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _with_wheels(path: Path) -> dict[str, object]:
    report = scan_artifact(ScanRequest(path))
    return {
        "inflate": inflate._inflate.__name__,
        "needles": default_rules().engine,
        "findings": sorted([f.rule, f.path, f.line, f.severity.value] for f in report.findings),
        "bytes_read": report.bytes_read,
    }


def test_zlib_and_re_fallbacks_report_what_isal_and_hyperscan_do(tmp_path: Path) -> None:
    path = _leaky_tarball(tmp_path)
    fast, slow = _with_wheels(path), _without_wheels(path)
    assert (fast["inflate"], fast["needles"]) == ("isal.isal_zlib", "hyperscan")
    assert (slow["inflate"], slow["needles"]) == ("zlib", "re")
    assert {rule for rule, *_ in fast["findings"]} >= {  # type: ignore[attr-defined]
        "github-token",
        "generic-secret",
        "url-basic-auth",
    }
    assert slow["findings"] == fast["findings"]
    assert slow["bytes_read"] == fast["bytes_read"]


def test_a_truncated_stream_is_corrupt_on_the_zlib_path_too(tmp_path: Path) -> None:
    whole = _leaky_tarball(tmp_path).read_bytes()
    cut = tmp_path / "cut-1.0.0.tgz"
    cut.write_bytes(whole[: len(whole) // 2])
    fast, slow = _with_wheels(cut), _without_wheels(cut)
    assert slow["inflate"] == "zlib"
    assert "archive-corrupt" in {rule for rule, *_ in slow["findings"]}  # type: ignore[attr-defined]
    assert slow["findings"] == fast["findings"]
