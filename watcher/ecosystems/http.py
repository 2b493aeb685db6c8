"""The one way this service talks HTTP to a registry.

One aiohttp session per registry host, each with its own rate limit (asyncio-throttle) and
concurrency bound; timeouts everywhere; tenacity retries with jittered exponential backoff on
connection errors, timeouts, 5xx and unreadable bodies; 429 honours `Retry-After`. Errors that will
not heal (404, 401, other 4xx) surface at once as `HttpStatusError`; transient ones that outlast the
retries surface as `RegistryUnavailable`. Both are `RegistryError`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
import structlog
from asyncio_throttle.throttler import Throttler
from multidict import CIMultiDictProxy
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from watcher import metrics
from watcher.errors import RegistryError
from watcher.retry_after import parse_retry_after

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_USER_AGENT = (
    "registry-watcher/0.1 (release exposure monitor; set http.user_agent to add contact)"
)
_HASH_BLOCK = 1024 * 1024  # bytes handed to a thread at once for writing and hashing
_CHUNK = 64 * 1024


class HttpStatusError(RegistryError):
    """The registry answered with a status that retrying will not change (404, 401, 403, 4xx)."""

    def __init__(self, status: int, url: str, detail: str = "") -> None:
        self.status = status
        self.url = url
        super().__init__(f"HTTP {status} for {url}" + (f": {detail}" if detail else ""))


class RegistryUnavailable(RegistryError):
    """Transient failures (5xx, 429, timeouts, broken connections) outlasted every retry."""


class DownloadTooLarge(RegistryError):
    """An artifact exceeded the configured size cap; it is never scanned partially."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = 10.0
    read_timeout: float = 45.0  # between two reads of one response; large packuments are slow
    total_timeout: float = 300.0
    rate: int = 20  # requests per `rate_period` seconds, per host
    rate_period: float = 1.0
    max_concurrency: int = 8  # in-flight requests per host
    attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 300.0  # never sleep longer than this on one Retry-After
    # Bearer tokens for private registries, keyed "host", "host:port" or "host[:port]/path/"
    # (npm's nerf dart without `//`); the longest key matching a URL wins. Never logged.
    tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Whole Authorization header values ("Basic …", "Bearer …"), keyed like `tokens`; these win
    # over a bearer token under the same key.
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int  # 200-299, or 304 for a conditional request whose resource did not change
    url: str
    headers: CIMultiDictProxy[str]

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str | None:
        return self.headers.get("ETag")


@dataclass(frozen=True, slots=True)
class HttpResponse(_Reply):
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class JsonResponse(_Reply):
    data: Any = None  # None when not_modified


@dataclass(frozen=True, slots=True)
class Download:
    path: Path
    size: int
    digests: dict[str, str]  # hashlib name -> hex digest
    url: str


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def safe_url(url: str) -> str:
    """The URL without userinfo or query, fit for logs."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(slots=True)
class _Host:
    session: aiohttp.ClientSession
    throttler: Throttler
    slots: asyncio.Semaphore

    @contextlib.asynccontextmanager
    async def turn(self, ecosystem: str) -> AsyncIterator[None]:
        """One request's place within the host's concurrency and rate limits, counted."""
        async with self.slots, self.throttler:
            metrics.REGISTRY_REQUESTS.labels(ecosystem).inc()
            yield


class _Authorizations:
    """Which Authorization header a URL gets: the credential under the longest matching key. A
    path key (`host:port/npm/private/`) covers only URLs under that path, so two registries on one
    host with different tokens each get their own; a `host:port` key covers the whole origin, a
    bare `host` every port of it."""

    def __init__(self, tokens: Mapping[str, str], credentials: Mapping[str, str]) -> None:
        table = {key: f"Bearer {token}" for key, token in tokens.items() if token}
        table.update({key: header for key, header in credentials.items() if header})
        self._paths: list[tuple[str, str]] = []
        self._origins: dict[str, str] = {}
        self._hosts: dict[str, str] = {}
        for key, header in table.items():
            host, slash, path = key.partition("/")
            host = host.lower()
            if slash:
                self._paths.append((f"{host}/{path}", header))
            elif ":" in host:
                self._origins[host] = header
            else:
                self._hosts[host] = header
        # longest first, so the first match is the most specific
        self._paths.sort(key=lambda item: len(item[0]), reverse=True)

    def __repr__(self) -> str:
        return f"_Authorizations({len(self._paths) + len(self._origins) + len(self._hosts)} keys)"

    def header_for(self, url: str) -> str | None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        netloc = host + (f":{parts.port}" if parts.port else "")
        target = f"{netloc}{parts.path or '/'}"
        for prefix, header in self._paths:
            if target.startswith(prefix):
                return header
        return self._origins.get(netloc) or self._hosts.get(host)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


class RegistryHttp:
    """Async context manager owning one session per registry host."""

    def __init__(self, settings: HttpSettings | None = None) -> None:
        self.settings = settings or HttpSettings()
        self._hosts: dict[str, _Host] = {}
        self._auth = _Authorizations(self.settings.tokens, self.settings.credentials)
        self._jitter = wait_random_exponential(
            multiplier=self.settings.backoff_initial, max=self.settings.backoff_max
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        hosts, self._hosts = self._hosts, {}
        for host in hosts.values():
            await host.session.close()

    def _host(self, url: str) -> tuple[_Host, str]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RegistryError(f"not an http(s) URL: {safe_url(url)}")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        key = f"{parts.scheme}://{netloc}"
        host = self._hosts.get(key)
        if host is None:
            s = self.settings
            timeout = aiohttp.ClientTimeout(
                total=s.total_timeout, connect=s.connect_timeout, sock_read=s.read_timeout
            )
            session = aiohttp.ClientSession(
                timeout=timeout,
                headers={"User-Agent": s.user_agent},
                connector=aiohttp.TCPConnector(limit=s.max_concurrency),
                raise_for_status=False,
            )
            host = _Host(
                session,
                Throttler(rate_limit=s.rate, period=s.rate_period),
                asyncio.Semaphore(s.max_concurrency),
            )
            self._hosts[key] = host
        return host, netloc

    def _prepare(
        self, url: str, headers: Mapping[str, str] | None, etag: str | None = None
    ) -> tuple[_Host, dict[str, str]]:
        """The host's session and limits, and the request headers (its token, the validator)."""
        host, _ = self._host(url)
        return host, self._headers(url, headers, etag)

    def _headers(
        self, url: str, headers: Mapping[str, str] | None, etag: str | None
    ) -> dict[str, str]:
        out = dict(headers or {})
        authorization = self._auth.header_for(url)
        if authorization and "Authorization" not in out:
            out["Authorization"] = authorization
        if etag:
            out["If-None-Match"] = etag
        return out

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.settings.retry_after_max)
        return float(self._jitter(state))

    def _retrying(self, ecosystem: str, url: str) -> AsyncRetrying:
        def before_sleep(state: RetryCallState) -> None:
            metrics.REGISTRY_RETRIES.labels(ecosystem).inc()
            exc = state.outcome.exception() if state.outcome else None
            log.info(
                "registry_retry",
                ecosystem=ecosystem,
                url=safe_url(url),
                attempt=state.attempt_number,
                reason=getattr(exc, "reason", type(exc).__name__),
                sleep_s=round(state.upcoming_sleep, 3),
            )

        return AsyncRetrying(
            stop=stop_after_attempt(self.settings.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=before_sleep,
            reraise=True,
        )

    @staticmethod
    def _classify(response: aiohttp.ClientResponse, ecosystem: str, url: str, detail: str) -> None:
        """Raise for anything that is not 2xx/304: transient for 5xx/429, final otherwise."""
        status = response.status
        if 200 <= status < 300 or status == 304:
            return
        metrics.REGISTRY_ERRORS.labels(ecosystem, str(status)).inc()
        if status >= 500 or status in (408, 429):
            raise _Transient(str(status), parse_retry_after(response.headers.get("Retry-After")))
        raise HttpStatusError(status, safe_url(url), detail[:200])

    async def _attempt(
        self, coro_factory: Callable[[], Awaitable[T]], ecosystem: str, url: str
    ) -> T:
        """Run one try of a request, mapping aiohttp's failures onto `_Transient`."""
        try:
            return await coro_factory()
        except TimeoutError as exc:
            metrics.REGISTRY_ERRORS.labels(ecosystem, "timeout").inc()
            raise _Transient("timeout") from exc
        except aiohttp.ClientPayloadError as exc:
            metrics.REGISTRY_ERRORS.labels(ecosystem, "payload").inc()
            raise _Transient("payload") from exc
        except aiohttp.ClientError as exc:
            metrics.REGISTRY_ERRORS.labels(ecosystem, "connection").inc()
            raise _Transient("connection") from exc

    async def _run(self, once: Callable[[], Awaitable[T]], ecosystem: str, url: str) -> T:
        try:
            async for attempt in self._retrying(ecosystem, url):
                with attempt:
                    return await self._attempt(once, ecosystem, url)
        except _Transient as exc:
            raise RegistryUnavailable(
                f"{safe_url(url)} still failing after {self.settings.attempts} attempts ({exc.reason})"
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(
        self,
        url: str,
        *,
        ecosystem: str,
        headers: Mapping[str, str] | None = None,
        etag: str | None = None,
    ) -> HttpResponse:
        """GET a (small) document into memory. 304 is returned, not raised."""
        return await self._read("GET", url, ecosystem=ecosystem, headers=headers, etag=etag)

    async def head(
        self, url: str, *, ecosystem: str, headers: Mapping[str, str] | None = None
    ) -> int:
        """HEAD `url` (redirects followed) and return the final status: whether a file is still
        served, without downloading it. 4xx is returned, not raised; 5xx/429 retry as for `get`."""
        host, request_headers = self._prepare(url, headers)

        async def once() -> int:
            async with (
                host.turn(ecosystem),
                host.session.head(url, headers=request_headers, allow_redirects=True) as response,
            ):
                if response.status == 429 or response.status >= 500:
                    self._classify(response, ecosystem, url, "")
                return response.status

        return await self._run(once, ecosystem, url)

    async def post(
        self,
        url: str,
        body: bytes,
        *,
        ecosystem: str,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """POST a small body (PyPI's XML-RPC journal); same throttle, retries and errors as `get`.
        Only for idempotent calls: a retried POST is sent again."""
        return await self._read("POST", url, body, ecosystem=ecosystem, headers=headers)

    async def _read(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        *,
        ecosystem: str,
        headers: Mapping[str, str] | None,
        etag: str | None = None,
    ) -> HttpResponse:
        """One request whose whole answer is read into memory, throttled and retried."""
        host, request_headers = self._prepare(url, headers, etag)

        async def once() -> HttpResponse:
            async with (
                host.turn(ecosystem),
                host.session.request(method, url, data=body, headers=request_headers) as response,
            ):
                data = await response.read()
                metrics.REGISTRY_BYTES.labels(ecosystem).inc(len(data))
                self._classify(response, ecosystem, url, data.decode("utf-8", "replace"))
                if response.status == 304:
                    metrics.REGISTRY_NOT_MODIFIED.labels(ecosystem).inc()
                return HttpResponse(response.status, str(response.url), response.headers, data)

        return await self._run(once, ecosystem, url)

    async def get_json(
        self,
        url: str,
        *,
        ecosystem: str,
        headers: Mapping[str, str] | None = None,
        etag: str | None = None,
        accept: str = "application/json",
    ) -> JsonResponse:
        """GET and parse JSON. A body that does not parse (a cut-off transfer, an error page from a
        proxy) counts as transient: it is retried like a 5xx."""
        merged = {"Accept": accept, **(headers or {})}

        async def once() -> JsonResponse:
            response = await self.get(url, ecosystem=ecosystem, headers=merged, etag=etag)
            if response.not_modified:
                return JsonResponse(response.status, response.url, response.headers, None)
            try:
                data = orjson.loads(response.body)
            except orjson.JSONDecodeError as exc:
                metrics.REGISTRY_ERRORS.labels(ecosystem, "bad_json").inc()
                raise _Transient("bad_json") from exc
            return JsonResponse(response.status, response.url, response.headers, data)

        # `get` retries transport faults itself; this outer loop only re-reads unparsable bodies.
        return await self._run(once, ecosystem, url)

    async def download(
        self,
        url: str,
        dest: Path,
        *,
        ecosystem: str,
        max_bytes: int,
        algorithms: Iterable[str] = ("sha512", "sha256", "sha1"),
        headers: Mapping[str, str] | None = None,
    ) -> Download:
        """Stream `url` into `dest`, hashing as it goes; never holds the file in memory. A transfer
        cut short is restarted from the beginning; exceeding `max_bytes` is final."""
        host, request_headers = self._prepare(url, headers)
        names = tuple(algorithms)

        async def once() -> Download:
            hashers = {name: hashlib.new(name) for name in names}
            size = 0
            async with (
                host.turn(ecosystem),
                host.session.get(url, headers=request_headers) as response,
            ):
                if response.status >= 300:
                    detail = (await response.read())[:200].decode("utf-8", "replace")
                    self._classify(response, ecosystem, url, detail)
                    raise HttpStatusError(response.status, safe_url(url), detail)
                declared = response.content_length
                if declared is not None and declared > max_bytes:
                    raise DownloadTooLarge(
                        f"{safe_url(url)} declares {declared} bytes, over the {max_bytes} cap"
                    )
                with dest.open("wb") as sink:

                    def consume(block: bytes) -> None:
                        sink.write(block)
                        for hasher in hashers.values():
                            hasher.update(block)

                    pending = bytearray()
                    async for chunk in response.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        metrics.REGISTRY_BYTES.labels(ecosystem).inc(len(chunk))
                        if size > max_bytes:
                            raise DownloadTooLarge(
                                f"{safe_url(url)} exceeded the {max_bytes} byte cap"
                            )
                        pending += chunk
                        if len(pending) >= _HASH_BLOCK:
                            # hashing and disk writes stay off the event loop
                            await asyncio.to_thread(consume, bytes(pending))
                            pending.clear()
                    if pending:
                        await asyncio.to_thread(consume, bytes(pending))
            return Download(dest, size, {n: h.hexdigest() for n, h in hashers.items()}, url)

        try:
            return await self._run(once, ecosystem, url)
        except BaseException:
            _remove(dest)
            raise
