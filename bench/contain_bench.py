"""Publish → contained latency of automatic containment (`containment.auto`), end to end.

A real Verdaccio and `watcher run` as a subprocess (npm polled every second, as in the tests).
Each of 20 packages gets a clean 1.0.0 (the baseline), then a leaky 1.1.0 that npm makes
`latest`; the clock runs from `npm publish` returning to the registry showing `latest` back on
1.0.0 and 1.1.0 deprecated. Prints p50 / p99 / max, and the service's own histogram count.
The figure includes the feed's poll interval (1 s) and the scan: it is the whole path. Also:
publish → the opening page delivered on every channel saying what was done (it waits at most 5 s
for the outcome), read from the state file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration")]

from npm_servers import Verdaccio, run_verdaccio  # noqa: E402
from servers_common import free_port  # noqa: E402
from service_harness import ServiceProcess, leaky_files, service_yaml, wait_release  # noqa: E402

RELEASES = 20


def contained(verdaccio: Verdaccio, name: str) -> bool:
    doc = verdaccio.packument(name)
    return doc["dist-tags"].get("latest") == "1.0.0" and bool(
        doc["versions"].get("1.1.0", {}).get("deprecated")
    )


def paged_with_outcome(state: Path, name: str) -> bool:
    """The opening page says the outcome and no delivery of it is left in the outbox."""
    with sqlite3.connect(state) as db:
        rows = db.execute(
            "SELECT e.message, (SELECT COUNT(*) FROM outbox AS o WHERE o.event = e.id) "
            "FROM incident_events AS e WHERE e.dedup_key = ? AND e.type = 'incident.opened'",
            (f"watcher/npm/{name}/1.1.0",),
        ).fetchall()
    return bool(rows) and "auto-contained" in (rows[0][0] or "") and rows[0][1] == 0


def quantiles(values: list[float]) -> tuple[float, float, float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99, ordered[-1], ordered[0]


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with run_verdaccio(root / "verdaccio", log=False) as verdaccio:
            names = [f"bench-contain-{i}-{free_port()}" for i in range(RELEASES)]
            for name in names:
                await asyncio.to_thread(verdaccio.publish, name, "1.0.0")
            port = free_port()
            state = root / "state.db"
            auto = json.dumps({"npm": {"token": verdaccio.token}})
            config = root / "watcher.yaml"
            config.write_text(
                service_yaml(
                    state=state,
                    port=port,
                    npm_url=verdaccio.url,
                    packages=names,
                    extra=f"containment:\n  check_interval: 1s\n  auto: {auto}\n",
                )
            )
            service = ServiceProcess(config, port, root)
            service.start()
            try:
                await service.wait_ready()
                for name in names:
                    await wait_release(state, name, "1.0.0", within=120)
                took: list[float] = []
                paged: list[float] = []
                for i, name in enumerate(names):
                    await asyncio.to_thread(verdaccio.publish, name, "1.1.0", leaky_files(f"b{i}"))
                    start = time.monotonic()
                    while not await asyncio.to_thread(contained, verdaccio, name):
                        if time.monotonic() - start > 60:
                            raise SystemExit(f"{name}@1.1.0 not contained within 60 s")
                        await asyncio.sleep(0.05)
                    took.append(time.monotonic() - start)
                    while not await asyncio.to_thread(paged_with_outcome, state, name):
                        if time.monotonic() - start > 60:
                            raise SystemExit(f"{name}@1.1.0: no page with the outcome in 60 s")
                        await asyncio.sleep(0.05)
                    paged.append(time.monotonic() - start)
                metrics = service.get("/metrics")[1]
                count = next(
                    (
                        line.split()[-1]
                        for line in metrics.splitlines()
                        if line.startswith("watcher_publish_to_contained_seconds_count")
                    ),
                    "?",
                )
            finally:
                service.terminate()
    print(f"auto-containment, {RELEASES} leaky releases that became latest (Verdaccio, poll 1 s)")
    for what, values in (
        ("publish → off latest + deprecated", took),
        ("publish → opening page delivered, saying so", paged),
    ):
        p50, p99, top, low = quantiles(values)
        print(f"{what}: p50 {p50:.2f} s, p99 {p99:.2f} s, max {top:.2f} s, min {low:.2f} s")
    print(f"watcher_publish_to_contained_seconds observations: {count}")


if __name__ == "__main__":
    asyncio.run(main())
