"""Scan speed and memory on a large real npm tarball with tens-of-megabytes source maps.

Target: scanning the release *and its baseline* takes at most 4x the wall time of `gzip -dc` on the
release tarball, with peak RSS under 384 MiB, on a 2-core machine. Prints figures; asserts nothing.

Default subject: @tensorflow/tfjs 4.22.0 (30 MB tgz, 147 MB unpacked, six source maps of 16-19 MB
each with sourcesContent) against 4.21.0. Tarballs are fetched with `npm pack`, which uses the
machine's own npm registry setting, into bench/.data/.

    python bench/scan_bench.py [--package NAME --version V --baseline-version V] [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).parent / ".data"


def fetch(spec: str) -> Path:
    DATA.mkdir(exist_ok=True)
    out = subprocess.run(
        ["npm", "pack", spec, "--pack-destination", str(DATA), "--silent"],
        check=True,
        capture_output=True,
        text=True,
    )
    return DATA / out.stdout.strip().splitlines()[-1]


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and all its descendants, from /proc."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        stack.extend(int(child) for child in children)
    return total


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak summed RSS (KiB) of the process tree, sampled every 10 ms."""
    started = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss_kib(proc.pid))
            time.sleep(0.01)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed with {proc.returncode}")
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--package", default="@tensorflow/tfjs")
    parser.add_argument("--version", default="4.22.0")
    parser.add_argument("--baseline-version", default="4.21.0")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    target = fetch(f"{args.package}@{args.version}")
    baseline = fetch(f"{args.package}@{args.baseline_version}")
    watcher = str(Path(sys.executable).with_name("watcher"))
    scan_cmd = [watcher, "scan", str(target), "--baseline", str(baseline), "--format", "json"]
    alone_cmd = [watcher, "scan", str(target), "--format", "json"]

    gzip_times = [
        timed(["sh", "-c", f"gzip -dc '{target}' > /dev/null"])[0] for _ in range(args.runs)
    ]
    scans = [timed(scan_cmd) for _ in range(args.runs)]
    alone = [timed(alone_cmd) for _ in range(args.runs)]

    gzip_s = statistics.median(gzip_times)
    scan_s = statistics.median(t for t, _ in scans)
    alone_s = statistics.median(t for t, _ in alone)
    peak_mib = max(rss for _, rss in scans) / 1024
    print(f"subject            {args.package}@{args.version} vs {args.baseline_version}")
    print(f"tarball            {target.stat().st_size / 1e6:.1f} MB")
    print(f"gzip -dc           {gzip_s:.2f} s (median of {args.runs})")
    print(f"scan + baseline    {scan_s:.2f} s  ratio {scan_s / gzip_s:.2f}x (goal <= 4x)")
    print(f"scan alone         {alone_s:.2f} s  ratio {alone_s / gzip_s:.2f}x")
    print(f"peak RSS, tree     {peak_mib:.0f} MiB (both processes summed; goal < 384 MiB)")


if __name__ == "__main__":
    main()
