"""Figures for the service: publish-to-page latency and the idle footprint.

1. Latency: `watcher run` polls a local Verdaccio every 1 s; 20 releases that each ship a new
   source-map leak are published one after another; for each, the time from the publish returning
   to the webhook receiver getting the signed page (p50 / p99 / max), and the registry-stated publish
   time to the page.
2. Footprint: the service watching 1,000 names (300 published tiny packages, 700 names that do not
   exist: 404s), poll interval 30 s, RSS of the service process and of its scan-pool processes once
   the first sweep is done and it is idle. The first sweep is paced by the HTTP layer's per-host
   rate limit (20 requests/s by default), not by the poll interval.

Run: `.venv/bin/python bench/service_bench.py` (installs Verdaccio under .cache/tools on first use).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration")]

from npm_servers import Verdaccio, run_verdaccio  # noqa: E402
from servers_common import free_port  # noqa: E402
from service_harness import (  # noqa: E402
    ServiceProcess,
    leaky_files,
    service_yaml,
    webhook_secret,
)

from tests.receivers import webhook_receiver  # noqa: E402

PUBLISHES = 20
NAMES = 1000
PUBLISHED_NAMES = 300


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid="], check=False, capture_output=True, text=True
    ).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def latency(verdaccio: Verdaccio, workdir: Path) -> None:
    secret = webhook_secret()
    name = "bench-latency"
    await asyncio.to_thread(verdaccio.publish_raw, name, "1.0.0")
    async with webhook_receiver(secret) as receiver:
        port = free_port()
        config = workdir / "latency.yaml"
        config.write_text(
            service_yaml(
                state=workdir / "latency.db",
                port=port,
                npm_url=verdaccio.url,
                packages=[name],
                webhook_url=receiver.url,
                secret=secret,
            )
        )
        service = ServiceProcess(config, port, workdir)
        service.start()
        try:
            await service.wait_ready()
            await asyncio.sleep(2)  # the baseline is scanned
            from_return: list[float] = []
            from_stated: list[float] = []
            jitter = random.Random(7)
            for index in range(1, PUBLISHES + 1):
                version = f"1.0.{index}"
                # publishes land at random points of the poll cycle, not in phase with it
                await asyncio.sleep(jitter.uniform(0.0, 1.5))
                await asyncio.to_thread(
                    verdaccio.publish_raw, name, version, files=leaky_files(f"v{index}")
                )
                published = time.time()
                await receiver.wait_for(index, within=60)
                page = receiver.requests[index - 1]
                data = page.json()["data"]
                assert data["version"] == version, data["version"]
                from_return.append(page.received_at - published)
                stated = datetime.fromisoformat(data["published_at"].replace("Z", "+00:00"))
                from_stated.append(page.received_at - stated.timestamp())
        finally:
            service.terminate()
    print(f"publish-to-page over {PUBLISHES} publishes, poll interval 1 s (webhook receiver):")
    for label, values in (
        ("from publish returning", from_return),
        ("from registry time (1 s res.)", from_stated),
    ):
        print(
            f"  {label:<28} p50 {statistics.median(values):.2f} s  "
            f"p99 {percentile(values, 0.99):.2f} s  max {max(values):.2f} s  "
            f"min {min(values):.2f} s"
        )


async def footprint(verdaccio: Verdaccio, workdir: Path) -> None:
    names = [f"bench-idle-{i:04d}" for i in range(NAMES)]
    for name in names[:PUBLISHED_NAMES]:
        await asyncio.to_thread(verdaccio.publish_raw, name, "1.0.0")
    port = free_port()
    config = workdir / "idle.yaml"
    config.write_text(
        service_yaml(
            state=workdir / "idle.db",
            port=port,
            npm_url=verdaccio.url,
            packages=names,
            poll="30s",
        ).replace("log: {format: json, level: info}", "log: {format: json, level: warning}")
    )
    service = ServiceProcess(config, port, workdir)
    started = time.monotonic()
    service.start()
    try:
        await service.wait_ready(within=180)
        ready = time.monotonic() - started
        await asyncio.sleep(20)  # idle: baselines scanned, between sweeps
        assert service.proc is not None
        main = rss_kib(service.proc.pid)
        pool = [rss_kib(pid) for pid in descendants(service.proc.pid)]
        _, metrics = service.get("/metrics")
        scanned = next(
            line
            for line in metrics.splitlines()
            if line.startswith('watcher_releases{state="scanned"')
        )
    finally:
        service.terminate()
    print(f"idle service watching {NAMES} npm names ({PUBLISHED_NAMES} exist), poll 30 s:")
    print(f"  first full sweep done (ready) after {ready:.1f} s; {scanned}")
    print(f"  RSS service process {main / 1024:.1f} MiB")
    print(
        f"  RSS scan pool ({len(pool)} processes: resource tracker, fork server, 1 worker) {sum(pool) / 1024:.1f} MiB"
    )
    print(f"  RSS total {(main + sum(pool)) / 1024:.1f} MiB")


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="watcher-bench-") as tmp:
        workdir = Path(tmp)
        with run_verdaccio(workdir / "verdaccio", user="bench") as verdaccio:
            await latency(verdaccio, workdir)
            await footprint(verdaccio, workdir)


if __name__ == "__main__":
    asyncio.run(main())
