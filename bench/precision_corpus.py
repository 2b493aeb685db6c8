"""The precision corpus of docs/precision.md: 40 popular packages, each scanned at its recorded
version against the release before it (`watcher scan --baseline auto --format json`), downloaded
through this machine's npm and pip settings (no registry address is written here).

Prints, per package, the findings at medium or above by rule and severity, then the totals the
review in docs/precision.md counts: findings of the rules the review found true (the source maps
that embed first-party sources, real install scripts, real file-count growth) and the rest, which
the review found false (fixture keys in tests and docs, at medium on purpose). A finding at medium
or above of any other rule, or any other rule at high or above, is new since the review: read it
in context (the JSON reports are kept in --out) before updating the figures.

    .venv/bin/python bench/precision_corpus.py [--out DIR] [--jobs 2] [--only NAME ...]

A figure, not a test: it downloads about 7 GB (numpy's 40 files twice) and takes a while.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WATCHER = [sys.executable, "-m", "watcher.cli"]  # the checkout this script is in (cwd=ROOT)

# The versions reviewed in docs/precision.md (each the newest when reviewed).
CORPUS = [
    "npm:react@19.3.1",
    "npm:lodash@4.18.1",
    "npm:express@5.3.0",
    "npm:axios@1.21.1",
    "npm:typescript@7.0.2",
    "npm:@angular/core@22.2.6",
    "npm:vue@3.5.45",
    "npm:next@16.4.6",
    "npm:webpack@5.113.0",
    "npm:esbuild@0.28.2",
    "npm:aws-sdk@2.1693.0",
    "npm:@aws-sdk/client-s3@3.1175.0",
    "npm:firebase@13.2.0",
    "npm:stripe@23.1.0",
    "npm:twilio@6.3.1",
    "npm:@slack/web-api@8.2.0",
    "npm:dotenv@18.0.10",
    "npm:jsonwebtoken@9.0.3",
    "npm:puppeteer-core@25.16.0",
    "npm:prisma@7.10.1",
    "npm:@sentry/browser@11.12.0",
    "npm:pdfjs-dist@6.5.438",
    "npm:monaco-editor@0.57.0",
    "npm:rxjs@7.8.2",
    "npm:moment@2.31.0",
    "pypi:requests==2.34.2",
    "pypi:boto3==1.44.8",
    "pypi:botocore==1.44.8",
    "pypi:django==5.2.19",
    "pypi:flask==3.1.3",
    "pypi:cryptography==50.0.2",
    "pypi:paramiko==5.1.0",
    "pypi:pyjwt==2.15.1",
    "pypi:google-auth==2.63.0",
    "pypi:openai==3.57.0",
    "pypi:anthropic==2.14.0",
    "pypi:stripe==16.1.0",
    "pypi:sqlalchemy==2.1.9",
    "pypi:ansible-core==2.19.14",
    "pypi:numpy==2.4.6",  # last: 3.1 GB over 40 files, twice
]

# Rules whose findings at medium+ the review found true on this corpus.
TRUE_RULES = frozenset({"sourcemap-embedded-sources", "npm-install-script", "file-count-growth"})
# Rules whose medium findings the review found false but kept at medium on purpose: fixture keys
# and key files in tests/ and docs/ (never at high: below the default page_at).
FIXTURE_RULES = frozenset(
    {
        "private-key",
        "key-material-file",
        "gcp-service-account-key",
        "service-account-json",
        "jwk-private-key",
    }
)
AT_LEAST = {"medium": 2, "high": 3, "critical": 4}


def scan(target: str, out: Path) -> dict[str, Any]:
    safe = target.replace("/", "_").replace(":", "_").replace("@", "_").replace("==", "_")
    report = out / f"{safe}.json"
    started = time.monotonic()
    done = subprocess.run(
        [
            *WATCHER,
            "scan",
            target,
            "--baseline",
            "auto",
            "--format",
            "json",
            "--fail-on",
            "critical",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    took = time.monotonic() - started
    if done.returncode not in (0, 1) or not done.stdout.strip():
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"target": target, "error": tail[0][:300], "wall_s": took}
    report.write_text(done.stdout)
    data = json.loads(done.stdout)
    data["wall_s"] = took
    return data


def rank(severity: str) -> int:
    return AT_LEAST.get(severity, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/precision-corpus"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="targets containing these names")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    targets = [t for t in CORPUS if not args.only or any(n in t for n in args.only)]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda t: scan(t, args.out), targets))

    totals: Counter[str] = Counter()
    unreviewed: list[str] = []
    print(f"{'target':42} {'files':>7} {'elapsed_s':>9}  findings >= medium (rule severity ×n)")
    for result in results:
        if "error" in result:
            print(f"{result['target']:42} ERROR {result['error']}")
            totals["errors"] += 1
            continue
        target = result["target"]
        name = f"{target['ecosystem']}:{target['name']}@{target['version']}"
        counts = Counter(
            (f["rule"], f["severity"]) for f in result["findings"] if rank(f["severity"]) >= 2
        )
        shown = ", ".join(f"{rule} {sev} ×{n}" for (rule, sev), n in sorted(counts.items()))
        elapsed = result["stats"]["elapsed_s"]
        print(f"{name:42} {target['files']:>7} {elapsed:>9.1f}  {shown or '-'}")
        for (rule, severity), n in counts.items():
            verdict = "tp" if rule in TRUE_RULES else "fp"
            totals[f"medium+ {verdict}"] += n
            if rank(severity) >= 3:
                totals[f"high+ {verdict}"] += n
            fixture = rule in FIXTURE_RULES and rank(severity) == 2
            if rule not in TRUE_RULES and not fixture:
                unreviewed.append(f"{name} {rule} {severity} ×{n}")
    print()
    print(
        f"findings >= medium: TP {totals['medium+ tp']:,}  FP {totals['medium+ fp']:,}   "
        f"findings >= high: TP {totals['high+ tp']:,}  FP {totals['high+ fp']:,}   "
        f"errors {totals['errors']}"
    )
    for line in unreviewed:
        print(f"  new since the review, read in context: {line}")
    return 1 if totals["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
