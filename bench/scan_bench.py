"""Scan speed and memory on large real npm tarballs with tens-of-megabytes source maps.

Measured: the whole `watcher scan TARGET --baseline BASELINE --format json` process (start-up and the
baseline's scan included) against `gzip -dc TARGET` alone, in the same run, on a 2-core machine.
Target: at most 2.0x `gzip -dc` wall (stretch 1.0x), peak RSS of the process tree at most 256 MiB.
Prints figures; asserts nothing.

Subjects (both by default):
- @anthropic-ai/claude-code 2.1.88 against 2.1.87 (31 MB tgz, 99 MB unpacked, a 60 MB cli.js.map
  with sourcesContent, six ripgrep binaries);
- @tensorflow/tfjs 4.22.0 against 4.21.0 (30 MB tgz, 147 MB unpacked, six source maps of 16-19 MB).
Tarballs are fetched with `npm pack`, which uses the machine's own npm registry setting, into
bench/.data/.

    python bench/scan_bench.py [--subject NAME@V:BASELINE_V ...] [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).parent / ".data"
SUBJECTS = ("@anthropic-ai/claude-code@2.1.88:2.1.87", "@tensorflow/tfjs@4.22.0:4.21.0")
RATIO_GOAL = 2.0
RSS_GOAL_MIB = 256


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


def bench(subject: str, runs: int) -> None:
    spec, _, baseline_version = subject.rpartition(":")
    package, _, version = spec.rpartition("@")
    target = fetch(spec)
    baseline = fetch(f"{package}@{baseline_version}")
    watcher = str(Path(sys.executable).with_name("watcher"))
    scan_cmd = [watcher, "scan", str(target), "--baseline", str(baseline), "--format", "json"]
    alone_cmd = [watcher, "scan", str(target), "--format", "json"]
    gzip_cmd = ["sh", "-c", f"gzip -dc '{target}' > /dev/null"]

    # interleaved, so load from elsewhere on the machine weighs on both sides alike
    gzip_times: list[float] = []
    scans: list[tuple[float, int]] = []
    alone: list[tuple[float, int]] = []
    for _ in range(runs):
        gzip_times.append(timed(gzip_cmd)[0])
        scans.append(timed(scan_cmd))
        alone.append(timed(alone_cmd))

    gzip_s = statistics.median(gzip_times)
    scan_s = statistics.median(t for t, _ in scans)
    alone_s = statistics.median(t for t, _ in alone)
    peak_mib = max(rss for _, rss in scans) / 1024
    alone_mib = max(rss for _, rss in alone) / 1024
    print(f"subject            {package}@{version} vs {baseline_version}")
    print(f"tarball            {target.stat().st_size / 1e6:.1f} MB")
    print(f"gzip -dc           {gzip_s:.2f} s (median of {runs})")
    print(
        f"scan + baseline    {scan_s:.2f} s  ratio {scan_s / gzip_s:.2f}x (goal <= {RATIO_GOAL}x)"
    )
    print(f"scan alone         {alone_s:.2f} s  ratio {alone_s / gzip_s:.2f}x")
    print(
        f"peak RSS, tree     {peak_mib:.0f} MiB with baseline, {alone_mib:.0f} MiB alone "
        f"(processes summed; goal <= {RSS_GOAL_MIB} MiB)"
    )
    print()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--subject",
        action="append",
        help="NAME@VERSION:BASELINE_VERSION (repeatable; default: both reference subjects)",
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for subject in args.subject or SUBJECTS:
        bench(subject, args.runs)


if __name__ == "__main__":
    main()
