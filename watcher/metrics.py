"""Every Prometheus metric of the service, defined once. Code increments these, never creates
metrics on the fly. Names start with `watcher_`; `ecosystem` is a label where it applies; no
package version or secret is ever a label value."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# --- registry HTTP (watcher.registry.http) -------------------------------------------------------
REGISTRY_REQUESTS = Counter(
    "watcher_registry_requests_total",
    "HTTP requests sent to a registry, retries included.",
    ["ecosystem"],
)
REGISTRY_ERRORS = Counter(
    "watcher_registry_errors_total",
    "Registry requests that failed, by HTTP status or by `timeout` / `connection` / `payload`.",
    ["ecosystem", "status"],
)
REGISTRY_RETRIES = Counter(
    "watcher_registry_retries_total",
    "Registry requests retried after a transient failure.",
    ["ecosystem"],
)
REGISTRY_BYTES = Counter(
    "watcher_registry_downloaded_bytes_total",
    "Bytes received from registries (metadata and artifacts).",
    ["ecosystem"],
)
REGISTRY_NOT_MODIFIED = Counter(
    "watcher_registry_not_modified_total",
    "Conditional requests answered 304 Not Modified.",
    ["ecosystem"],
)

# --- feeds (watcher.feeds) ----------------------------------------------------------------------
FEED_POLLS = Counter(
    "watcher_feed_polls_total",
    "Feed iterations, by outcome (ok / error).",
    ["ecosystem", "feed", "outcome"],
)
FEED_LAST_SUCCESS = Gauge(
    "watcher_feed_last_success_timestamp_seconds",
    "Unix time of the feed's last successful iteration.",
    ["ecosystem", "feed"],
)
FEED_EVENTS = Counter(
    "watcher_feed_events_total",
    "Events a feed produced, by kind (release / baseline / removed / unpublished).",
    ["ecosystem", "feed", "kind"],
)
FEED_PACKAGE_TOUCHES = Counter(
    "watcher_feed_package_touches_total",
    "Package documents read and diffed, by result (changed / unchanged / not_modified / missing).",
    ["ecosystem", "result"],
)
FEED_CURSOR_RESETS = Counter(
    "watcher_feed_cursor_resets_total",
    "Times a feed restarted from the head because its sequence jumped or went backwards.",
    ["ecosystem", "feed"],
)
FEED_STALE_RETRIES = Counter(
    "watcher_feed_stale_retries_total",
    "Package documents re-read because they were older than the feed said (stale cache copy).",
    ["ecosystem"],
)
FEED_LAG = Histogram(
    "watcher_feed_release_lag_seconds",
    "Seconds from a release's publish time (as the registry states it) to the feed seeing it.",
    ["ecosystem"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
)
