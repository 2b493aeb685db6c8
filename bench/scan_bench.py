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
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tarfile
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


def _js(seed: int, size: int) -> bytes:
    """Minified-looking JavaScript that compresses like real bundles (about 4:1)."""
    rng = random.Random(seed)
    words = ["function", "return", "const", "this", "value", "node", "item", "Error", "push"]
    out: list[str] = []
    total = 0
    while total < size:
        piece = (
            f"{rng.choice(words)}{rng.randrange(10**6)}="
            + f"{rng.choice(words)}.{rng.choice(words)}(e,t);"
        )
        out.append(piece)
        total += len(piece)
    return "".join(out).encode()[:size]


def _tgz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def nested_bench(runs: int, layers: int = 10, mib_each: int = 4) -> None:
    """Ten nested tarballs against the same bytes as plain files: time per inflated MB."""
    DATA.mkdir(exist_ok=True)
    manifest = json.dumps({"name": "nested-demo", "version": "1.0.0"}).encode()
    contents = {f"lib/part{i}.js": _js(i, mib_each * 1024 * 1024) for i in range(layers)}
    flat = DATA / "nested-demo-flat-1.0.0.tgz"
    flat.write_bytes(
        _tgz({"package/package.json": manifest} | {f"package/{k}": v for k, v in contents.items()})
    )
    nested = DATA / "nested-demo-nested-1.0.0.tgz"
    inner = {
        f"package/vendor/old-{i}.tgz": _tgz({"package/package.json": manifest, f"package/{k}": v})
        for i, (k, v) in enumerate(contents.items())
    }
    nested.write_bytes(_tgz({"package/package.json": manifest} | inner))
    watcher = str(Path(sys.executable).with_name("watcher"))
    print(
        f"nested archives    {layers} tarballs of {mib_each} MiB each inside one, vs the same files"
    )
    for label, path in (("flat", flat), ("nested", nested)):
        cmd = [watcher, "scan", str(path), "--format", "json"]
        measured = [timed(cmd) for _ in range(runs)]
        wall = statistics.median(run.wall_s for run in measured)
        cpu = statistics.median(run.cpu_s for run in measured)
        inflated = layers * mib_each + (
            sum(len(v) for v in inner.values()) / 2**20 if label == "nested" else 0
        )
        print(
            f"  {label:<8} {path.stat().st_size / 1e6:.1f} MB file, {inflated:.0f} MiB inflated in all "
            f"layers: {wall:.2f} s wall, {cpu:.2f} s CPU, {cpu / inflated * 1000:.1f} ms CPU per MiB"
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
    parser.add_argument(
        "--nested-only", action="store_true", help="only the nested-archives figure"
    )
    args = parser.parse_args()
    if not args.nested_only:
        for subject in args.subject or SUBJECTS:
            bench(subject, args.runs)
    nested_bench(args.runs)


if __name__ == "__main__":
    main()
