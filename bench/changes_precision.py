"""How quiet the what-changed rules are on clean releases: the docs/precision.md corpus, each
package's release against the one before it (`dependency-added`, `endpoint-added`,
`code-obfuscated`, `binary-added`, `install-hook-changed`).

Quiet means nothing at or above `page_at` (high by default) from these rules alone: no origin
finding is raised on a clean release, so they stay at medium or below; the counts per severity
and every finding at medium are printed for review. Figures, not a test.

npm tarballs come from `npm pack` (the machine's npm registry setting); PyPI files from the
machine's pip index through the watcher's own client. A PyPI release is its sdist and, when the
release is large, only its `py3-none-any` or one CPython 3.12 manylinux x86_64 wheel (numpy's 40
wheels would be 6 GB for the pair). Files go to bench/.data/changes/.

    python bench/changes_precision.py [--only NAME ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from watcher.ecosystems.http import RegistryHttp
from watcher.ecosystems.pypi.client import ProjectPage, PypiClient, PypiFile, baseline_version
from watcher.ecosystems.pypi.settings import resolve_pypi_index
from watcher.model import Ecosystem
from watcher.scanning.checks.changes import CHANGE_RULES
from watcher.scanning.scan import ScanRequest, scan_release

DATA = Path(__file__).parent / ".data" / "changes"
# Pins: (target, baseline) as measured on 2026-12-02 (each package's newest release then and the
# one before it in version order); a package without a pin takes its newest at run time.
NPM = [
    "react",
    "lodash",
    "express",
    "axios",
    "typescript",
    "@angular/core",
    "vue",
    "next",
    "webpack",
    "esbuild",
    "aws-sdk",
    "@aws-sdk/client-s3",
    "firebase",
    "stripe",
    "twilio",
    "@slack/web-api",
    "dotenv",
    "jsonwebtoken",
    "puppeteer-core",
    "prisma",
    "@sentry/browser",
    "pdfjs-dist",
    "monaco-editor",
    "rxjs",
    "moment",
]
NPM_PINS: dict[str, tuple[str, str]] = {
    "react": ("19.3.1", "19.3.0"),
    "lodash": ("4.18.1", "4.18.0"),
    "express": ("5.3.0", "5.2.1"),
    "axios": ("1.21.1", "1.21.0"),
    "typescript": ("7.0.2", "6.0.3"),
    "@angular/core": ("22.2.6", "22.2.5"),
    "vue": ("3.5.45", "3.5.44"),
    "next": ("16.4.6", "16.4.5"),
    "webpack": ("5.113.0", "5.112.2"),
    "esbuild": ("0.28.2", "0.28.1"),
    "aws-sdk": ("2.1693.0", "2.1692.0"),
    "@aws-sdk/client-s3": ("3.1175.0", "3.1173.0"),
    "firebase": ("13.2.0", "13.1.0"),
    "stripe": ("23.1.0", "23.0.1"),
    "twilio": ("6.3.1", "6.2.0"),
    "@slack/web-api": ("8.2.0", "8.1.1"),
    "dotenv": ("18.0.10", "18.0.9"),
    "jsonwebtoken": ("9.0.3", "9.0.2"),
    "puppeteer-core": ("25.16.0", "25.15.0"),
    "prisma": ("7.10.1", "7.10.0"),
    "@sentry/browser": ("11.12.0", "11.11.0"),
    "pdfjs-dist": ("6.5.438", "6.4.299"),
    "monaco-editor": ("0.57.0", "0.56.0"),
    "rxjs": ("7.8.2", "7.8.1"),
    "moment": ("2.31.0", "2.30.1"),
}
PYPI = [
    "requests",
    "boto3",
    "botocore",
    "django",
    "flask",
    "numpy",
    "cryptography",
    "paramiko",
    "pyjwt",
    "google-auth",
    "openai",
    "anthropic",
    "stripe",
    "sqlalchemy",
    "ansible-core",
]
PYPI_PINS: dict[str, tuple[str, str]] = {
    "requests": ("2.34.2", "2.34.1"),
    "boto3": ("1.44.8", "1.44.7"),
    "botocore": ("1.44.8", "1.44.7"),
    "django": ("6.1.3", "6.1.2"),
    "flask": ("3.1.3", "3.1.2"),
    "numpy": ("2.5.5", "2.5.4"),
    "cryptography": ("50.0.2", "50.0.1"),
    "paramiko": ("5.1.0", "5.0.1"),
    "pyjwt": ("2.15.1", "2.15.0"),
    "google-auth": ("2.63.0", "2.62.2"),
    "openai": ("3.57.0", "3.56.0"),
    "anthropic": ("2.15.0", "2.14.0"),
    "stripe": ("16.1.0", "16.0.1"),
    "sqlalchemy": ("2.1.9", "2.1.8"),
    "ansible-core": ("2.21.5", "2.21.4"),
}
ALL_FILES_UNDER = 150 * 1024 * 1024


def npm_pack(spec: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        ["npm", "pack", spec, "--pack-destination", str(dest), "--silent"],
        check=True,
        capture_output=True,
        text=True,
    )
    return dest / out.stdout.strip().splitlines()[-1]


def npm_versions(name: str) -> tuple[str, str]:
    """The newest release and the one before it, by semver (pre-releases aside)."""
    from watcher.ecosystems.versions import select_baseline  # noqa: PLC0415

    out = subprocess.run(
        ["npm", "view", name, "dist-tags.latest", "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    latest = json.loads(out.stdout)
    out = subprocess.run(
        ["npm", "view", name, "versions", "--json"], check=True, capture_output=True, text=True
    )
    versions = [v for v in json.loads(out.stdout) if "-" not in v]
    before = select_baseline(Ecosystem.NPM, latest, versions)
    assert before is not None
    return latest, before


def _chosen(page: ProjectPage, version: str) -> list[PypiFile]:
    files = [f for f in page.files_of(version) if not f.yanked]
    if sum(f.size or 0 for f in files) <= ALL_FILES_UNDER:
        return files
    sdists = [f for f in files if f.filename.endswith((".tar.gz", ".zip"))]
    wheels = [f for f in files if f.filename.endswith("py3-none-any.whl")] or [
        f
        for f in files
        if "-cp312-" in f.filename and "manylinux" in f.filename and "x86_64" in f.filename
    ]
    return sdists[:1] + wheels[:1]


async def pypi_files(name: str) -> tuple[str, str, list[Path], list[Path]]:
    index = resolve_pypi_index(None).url
    async with RegistryHttp() as http:
        client = PypiClient(http, index)
        page = await client.project(name)
        assert page is not None
        if name in PYPI_PINS:
            target, base = PYPI_PINS[name]
        else:
            stable = [v for v in page.versions if page.files_of(v) and not _pre(v)]
            target = max(stable, key=_key)
            found = baseline_version(page, target)
            assert found is not None
            base = found
        paths: list[list[Path]] = []
        for version in (target, base):
            dest = DATA / "pypi" / name / version
            dest.mkdir(parents=True, exist_ok=True)
            got = []
            for file in _chosen(page, version):
                path = dest / file.filename
                if not path.exists():
                    path = await client.download(file, dest, max_bytes=4 << 30)
                got.append(path)
            paths.append(got)
        return target, base, paths[0], paths[1]


def _pre(version: str) -> bool:
    from packaging.version import InvalidVersion, Version  # noqa: PLC0415

    try:
        return Version(version).is_prerelease
    except InvalidVersion:
        return True


def _key(version: str) -> Any:
    from packaging.version import Version  # noqa: PLC0415

    return Version(version)


def measure(
    ecosystem: Ecosystem, name: str, target: list[Path], baseline: list[Path], several: bool
) -> list[dict[str, Any]]:
    report = scan_release(
        [ScanRequest(p, ecosystem) for p in target],
        [ScanRequest(p, ecosystem) for p in baseline],
        prefix_paths=several,
    )
    return [
        {**f.summary_dict(), "evidence": f.evidence}
        for f in report.findings
        if f.rule in CHANGE_RULES
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="package names to measure")
    parser.add_argument("--json", type=Path, default=None, help="write every finding here")
    parser.add_argument("--skip-pypi", action="store_true")
    parser.add_argument("--skip-npm", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    totals: Counter[str] = Counter()
    subjects: list[tuple[Ecosystem, str]] = []
    if not args.skip_npm:
        subjects += [(Ecosystem.NPM, n) for n in NPM]
    if not args.skip_pypi:
        subjects += [(Ecosystem.PYPI, n) for n in PYPI]
    for ecosystem, name in subjects:
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        try:
            if ecosystem == Ecosystem.NPM:
                target_v, base_v = NPM_PINS.get(name) or npm_versions(name)
                dest = DATA / "npm" / name.replace("/", "+")
                target = [npm_pack(f"{name}@{target_v}", dest / target_v)]
                base = [npm_pack(f"{name}@{base_v}", dest / base_v)]
            else:
                target_v, base_v, target, base = asyncio.run(pypi_files(name))
            found = measure(ecosystem, name, target, base, ecosystem == Ecosystem.PYPI)
        except Exception as exc:  # a package that cannot be fetched is reported, not fatal
            print(f"{ecosystem}:{name}: skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
            continue
        counts = Counter(f["severity"] for f in found)
        totals.update(counts)
        print(
            f"{ecosystem}:{name} {target_v} vs {base_v} ({time.perf_counter() - started:.0f} s): "
            + (", ".join(f"{sev} {n}" for sev, n in sorted(counts.items())) or "nothing"),
            flush=True,
        )
        for f in found:
            print(f"    {f['severity']:<6} {f['rule']:<20} {f['path'][:90]}  {f['message'][:140]}")
        rows.append(
            {
                "package": f"{ecosystem}:{name}",
                "target": target_v,
                "baseline": base_v,
                "findings": found,
            }
        )
    print("total:", ", ".join(f"{sev} {n}" for sev, n in sorted(totals.items())) or "nothing")
    print("at or above high (page_at default):", totals["high"] + totals["critical"])
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
