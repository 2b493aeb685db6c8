"""What a real Prometheus would scrape from `watcher run` and what its log says: every counter
series the service can increment exists at 0 from the start (so `increase()` sees the first
event), time to contain has buckets down to 5 s, and each page is logged once per channel."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from npm_servers import Verdaccio
from service_harness import leaky_files, publish, start_config, unique, until, wait_release

from tests.receivers import Receiver
from watcher.model import Category, Severity

pytestmark = pytest.mark.asyncio(loop_scope="session")


def series(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def test_counters_start_at_zero_and_each_page_is_logged_once(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("svc-metrics")
    await publish(verdaccio, name, "1.0.0")
    service = start_config(
        tmp_path, npm_url=verdaccio.url, packages=[name], webhook_url=receiver.url, secret=secret
    )
    service.start()
    try:
        await service.wait_ready()
        status, text = await asyncio.to_thread(service.get, "/metrics")
        assert status == 200
        scraped = series(text)
        for category in Category:
            for severity in Severity:
                key = (
                    f'watcher_findings_total{{category="{category.value}",ecosystem="npm",'
                    f'severity="{severity.value}"}}'
                )
                assert scraped.get(key) == 0.0, key
        for channel in ("team/console", "team/webhook"):
            for outcome in ("delivered", "retry", "failed", "disable", "dead"):
                key = f'watcher_deliveries_total{{channel="{channel}",outcome="{outcome}"}}'
                assert scraped.get(key) == 0.0, key
        assert (
            scraped.get('watcher_feed_polls_total{ecosystem="npm",feed="npm-poll",outcome="error"}')
            == 0.0
        )
        assert scraped.get('watcher_incidents_opened_total{ecosystem="npm"}') == 0.0
        assert scraped.get('watcher_packages_not_found{ecosystem="npm"}') == 0.0
        assert 'watcher_time_to_contain_seconds_bucket{ecosystem="npm",le="5.0"} 0.0' in text

        await publish(verdaccio, name, "1.0.1", leaky_files("m"))
        await receiver.wait_for(1, within=30)
        # a private registry: every npm command of the runbook names it, no public-CDN steps
        runbook = receiver.requests[0].json()["data"]["runbook"]
        lines = [ln for step in runbook for ln in (step["command"] or "").splitlines()]
        npm_lines = [ln for ln in lines if ln.startswith("npm ")]
        assert npm_lines and all(f"--registry {verdaccio.url}" in ln for ln in npm_lines), lines
        assert "jsdelivr" not in json.dumps(runbook) and "unpkg" not in json.dumps(runbook)
        await wait_release(tmp_path / "state.db", name, "1.0.1")

        def delivered() -> list[str]:
            return sorted(
                e["channel"]
                for e in service.logs()
                if e["event"] == "page_delivered" and e.get("version") == "1.0.1"
            )

        await until(lambda: len(delivered()) >= 2)
        await asyncio.sleep(1.0)  # a second line for the same page would come right after
        assert delivered() == ["team/console", "team/webhook"], "one line per page and channel"
        _, text = await asyncio.to_thread(service.get, "/metrics")
        key = 'watcher_findings_total{category="source-map",ecosystem="npm",severity="critical"}'
        assert series(text)[key] == 1.0
    finally:
        service.ensure_stopped()
