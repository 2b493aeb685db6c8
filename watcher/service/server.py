"""The service's one HTTP port: `/metrics` (Prometheus text), `/healthz` (the process answers) and
`/readyz` (the store is open and every feed completed an iteration within three of its intervals).

The server knows nothing of feeds or the store: the daemon hands it a readiness check and a hook
that refreshes the store-derived gauges right before each scrape.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FeedHealth:
    name: str
    interval: float
    last_success: float | None  # unix time of the last completed iteration


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...] = ()


def readiness(
    store_open: bool,
    feeds: Sequence[FeedHealth],
    *,
    now: float | None = None,
    intervals: float = 3.0,
) -> Readiness:
    """Ready when the store is open and every feed succeeded within `intervals` of its interval."""
    at = time.time() if now is None else now
    reasons: list[str] = []
    if not store_open:
        reasons.append("store: not open")
    for feed in feeds:
        if feed.last_success is None:
            reasons.append(f"{feed.name}: no successful poll yet")
        elif at - feed.last_success > intervals * feed.interval:
            reasons.append(
                f"{feed.name}: last successful poll {at - feed.last_success:.0f}s ago "
                f"(interval {feed.interval:g}s)"
            )
    return Readiness(not reasons, tuple(reasons))


ReadinessCheck = Callable[[], Readiness]
ScrapeHook = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


def build_app(
    check: ReadinessCheck,
    *,
    before_scrape: ScrapeHook = _nothing,
    registry: CollectorRegistry = REGISTRY,
    extra: Callable[[web.Application], None] | None = None,
    client_max_size: int = 1024**2,
) -> web.Application:
    """The port's application; `extra` installs more routes on it (the approvals API when it
    shares this port)."""

    async def metrics(_: web.Request) -> web.Response:
        try:
            await before_scrape()
        except Exception as exc:  # a scrape still shows every other metric
            log.warning("metrics_refresh_failed", error=f"{type(exc).__name__}: {exc}")
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        state = check()
        return web.json_response(
            {"ready": state.ready, "reasons": list(state.reasons)},
            status=200 if state.ready else 503,
        )

    app = web.Application(client_max_size=client_max_size)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if extra is not None:
        extra(app)
    return app


class HttpServer:
    """Start with `await server.start()`, stop with `await server.stop()`."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.host = host
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        # port 0 asks the OS for one: report the real one
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        log.info("http_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()
