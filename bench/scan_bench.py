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
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
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


@dataclass
class Run:
    wall_s: float
    cpu_s: float  # user + system of the process tree (children reaped by the command included)
    rss_kib: int  # peak of the tree's summed RSS (pages shared after fork counted in each)
    pss_kib: int  # peak of the tree's summed PSS (shared pages split: memory actually used)


def tree_memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process and all its descendants, from /proc."""
    rss = pss = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
        stack.extend(int(child) for child in children)
    return rss, pss


def timed(cmd: list[str]) -> Run:
    """Wall and CPU seconds and peak memory of the process tree, sampled every 10 ms."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        peak_rss = peak_pss = 0
        while proc.poll() is None:
            rss, pss = tree_memory_kib(proc.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(0.01)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed with {proc.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(elapsed, cpu, peak_rss, peak_pss)


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
    gzips: list[Run] = []
    scans: list[Run] = []
    alone: list[Run] = []
    for _ in range(runs):
        gzips.append(timed(gzip_cmd))
        scans.append(timed(scan_cmd))
        alone.append(timed(alone_cmd))

    def median(runs_: list[Run], field: str) -> float:
        return statistics.median(getattr(run, field) for run in runs_)

    gzip_s, gzip_cpu = median(gzips, "wall_s"), median(gzips, "cpu_s")
    scan_s, scan_cpu = median(scans, "wall_s"), median(scans, "cpu_s")
    alone_s, alone_cpu = median(alone, "wall_s"), median(alone, "cpu_s")
    print(f"subject            {package}@{version} vs {baseline_version}")
    print(f"tarball            {target.stat().st_size / 1e6:.1f} MB")
    print(f"gzip -dc           {gzip_s:.2f} s wall, {gzip_cpu:.2f} s CPU (medians of {runs})")
    print(
        f"scan + baseline    {scan_s:.2f} s wall  ratio {scan_s / gzip_s:.2f}x "
        f"(goal <= {RATIO_GOAL}x); CPU {scan_cpu:.2f} s, {scan_cpu / gzip_cpu:.2f}x gzip's"
    )
    print(
        f"scan alone         {alone_s:.2f} s wall  ratio {alone_s / gzip_s:.2f}x; "
        f"CPU {alone_cpu:.2f} s, {alone_cpu / gzip_cpu:.2f}x gzip's"
    )
    for label, group in (("with baseline", scans), ("alone", alone)):
        rss = max(run.rss_kib for run in group) / 1024
        pss = max(run.pss_kib for run in group) / 1024
        print(
            f"peak memory, tree  {label:<13} RSS {rss:.0f} MiB, PSS {pss:.0f} MiB "
            f"(goal <= {RSS_GOAL_MIB} MiB)"
        )
    load = os.getloadavg()[0]
    print(f"load average       {load:.1f} at the end (2 cores; other work inflates wall time)")
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
