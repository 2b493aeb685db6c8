"""What matching private fingerprints costs on the incident's reference shape: a 60 MB source map
with ~1,900 first-party sources (about 500k lines) beside third-party ones, in an npm tarball.

Generated here (nothing downloaded): a private tree of 1,900 modules is indexed with
`watcher.private.build`, its files go into the map's `sourcesContent` (a tenth of them edited, so
line votes run too, not only whole-file hashes) under a bundler namespace, and third-party sources
fill the map to 60 MB. Prints:
- the index build time, size and read (load) time for the ~500k-line tree;
- the matcher alone over every embedded source (what the `private-source` check adds);
- `scan_artifact` of the tarball with and without the index, best of N runs.
Target (issue 14): matching at most a few hundred milliseconds. Prints figures; asserts nothing.

    python bench/fingerprint_bench.py [--runs N] [--files N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.builders import npm_tarball
from tests.privatetree import module_source, open_source_module
from watcher.private.build import build_index
from watcher.private.index import read_index
from watcher.private.keys import FingerprintKey
from watcher.private.match import Matcher, load_index
from watcher.scanning.checks.base import ScanOptions
from watcher.scanning.scan import ScanRequest, scan_artifact

KEY = "bench-fingerprint-key-0123456789"
MAP_BYTES = 60 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=1900)
    args = parser.parse_args()
    rng = random.Random(14)
    with tempfile.TemporaryDirectory(prefix="fp-bench-") as work:
        root = Path(work)
        tree = root / "private"
        sources: dict[str, str] = {}
        for n in range(args.files):
            rel = f"src/{rng.choice(['billing', 'ledger', 'payouts', 'ui'])}/m{n}.ts"
            text = module_source(rng, functions=20)  # ~250 lines: ~470k in all
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(text)
            sources[rel] = text
        lines = sum(text.count("\n") for text in sources.values())
        key = FingerprintKey(KEY)
        started = time.perf_counter()
        built = build_index([tree], root / "private.wfp", key, name="bench")
        build_s = time.perf_counter() - started

        names, contents = [], []
        for n, (rel, original) in enumerate(sources.items()):
            text = original
            if n % 10 == 0:  # edited: a line changed in every eight
                text = "\n".join(
                    line + " // x" if i % 8 == 0 else line
                    for i, line in enumerate(text.split("\n"))
                )
            names.append(f"webpack://app/./{rel}")
            contents.append(text)
        first_party = sum(len(c) for c in contents)
        third = 0
        while first_party + third < MAP_BYTES - 2 * 1024 * 1024:
            text = open_source_module(rng)
            names.append(f"webpack://app/./node_modules/dep{len(names)}/index.js")
            contents.append(text)
            third += len(text)
        smap = json.dumps(
            {
                "version": 3,
                "sources": names,
                "sourcesContent": contents,
                "mappings": "AAAA;" * 300_000,
            }
        )
        pkg = npm_tarball(
            root / "app.tgz",
            {"cli.js": "x()\n//# sourceMappingURL=cli.js.map\n", "cli.js.map": smap},
        )

        started = time.perf_counter()
        loaded = read_index(root / "private.wfp")
        load_s = time.perf_counter() - started
        matcher = Matcher([load_index(root / "private.wfp")], key)
        best_match = min(
            _time(lambda: [matcher.match(c) for c in contents]) for _ in range(args.runs)
        )
        found = sum(1 for c in contents if matcher.match(c))
        with_index = ScanOptions(fingerprints=(str(root / "private.wfp"),), fingerprint_key=KEY)
        plain = min(_time(lambda: scan_artifact(ScanRequest(pkg))) for _ in range(args.runs))
        indexed = min(
            _time(lambda: scan_artifact(ScanRequest(pkg, options=with_index)))
            for _ in range(args.runs)
        )
        report = scan_artifact(ScanRequest(pkg, options=with_index))
        [finding] = [f for f in report.findings if f.rule == "private-source"]
        print(f"private tree: {args.files:,} files, {lines:,} lines")
        print(
            f"index: built in {build_s:.1f} s, {built.size / 1e6:.1f} MB "
            f"({built.header.lines:,} line hashes, {built.header.winnow:,} winnowing fingerprints), "
            f"format {loaded.header.version}, read in {load_s * 1000:.0f} ms"
        )
        print(
            f"map: {len(smap) / 1e6:.1f} MB, {len(names):,} sources "
            f"({args.files:,} first-party, {first_party / 1e6:.1f} MB)"
        )
        print(f"matcher over every embedded source: {best_match * 1000:.0f} ms ({found:,} matched)")
        print(
            f"scan_artifact: {plain * 1000:.0f} ms without the index, {indexed * 1000:.0f} ms "
            f"with it (+{(indexed - plain) * 1000:.0f} ms); private-source reports "
            f"{finding.evidence['private_files']:,} files, {finding.evidence['private_lines']:,} lines"
        )


def _time(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
