"""Every Prometheus metric of the service, defined once. Code increments these, never creates
metrics on the fly. Names start with `watcher_`; `ecosystem` is a label where it applies; no
package version or secret is ever a label value."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from watcher.model import Category, Ecosystem, Severity

# --- registry HTTP (watcher.ecosystems.http) -------------------------------------------------------
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
FEED_NEWEST_LAG = Gauge(
    "watcher_feed_lag_seconds",
    "Now minus the publish time of the newest release the feeds have seen.",
    ["ecosystem"],
)
PACKAGES_NOT_FOUND = Gauge(
    "watcher_packages_not_found",
    "Watched package names the registry says do not exist (a typo, or not published yet).",
    ["ecosystem"],
)
FEED_CURSOR_AGE = Gauge(
    "watcher_feed_cursor_age_seconds",
    "Seconds since the feed's cursor last advanced (poll feeds: since their last complete sweep).",
    ["ecosystem", "feed"],
)

# --- store (refreshed from the state file before each scrape) -------------------------------------
STORE_UP = Gauge("watcher_store_up", "1 while the state store is open.")
STORE_ERRORS = Counter(
    "watcher_store_errors_total",
    "Store operations that failed (the database unreachable or refusing), by operation "
    "(lease / ping / claim / scan / feed / outbox / containment / metrics / origin).",
    ["operation"],
)
LEADER = Gauge(
    "watcher_leader",
    "1 while this replica leads the feed (follows its cursor), 0 elsewhere.",
    ["ecosystem", "feed"],
)
RELEASES_BY_STATE = Gauge(
    "watcher_releases",
    "Stored releases by scan state (pending / scanning / scanned / failed).",
    ["state"],
)
OPEN_INCIDENTS = Gauge("watcher_incidents_open", "Incidents not yet resolved.")
OPEN_INCIDENT_OLDEST = Gauge(
    "watcher_incident_open_oldest_seconds",
    "Age of the oldest incident not yet resolved, from when it was opened (0 when none is open).",
    ["ecosystem"],
)

# --- scan workers (watcher.service.workers) -------------------------------------------------------------
SCAN_DURATION = Histogram(
    "watcher_scan_duration_seconds",
    "Download plus scan time of one release, by outcome (scanned / retry / failed).",
    ["ecosystem", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
SCAN_BYTES = Counter(
    "watcher_scan_bytes_total",
    "Uncompressed bytes read by the scanner.",
    ["ecosystem"],
)
SCAN_FAILURES = Counter(
    "watcher_scan_failures_total",
    "Releases given up on after every retry (kept as failed with their reason).",
    ["ecosystem"],
)
SCAN_RETRIES = Counter(
    "watcher_scan_retries_total",
    "Scan attempts that failed and were scheduled again with backoff.",
    ["ecosystem"],
)
FINDINGS = Counter(
    "watcher_findings_total",
    "Findings stored, by category and severity.",
    ["ecosystem", "category", "severity"],
)
INCIDENTS_OPENED = Counter(
    "watcher_incidents_opened_total",
    "Incidents opened (each queues one page per channel of its owner).",
    ["ecosystem"],
)
INCIDENTS_RESOLVED = Counter(
    "watcher_incidents_resolved_total",
    "Incidents resolved.",
    ["ecosystem"],
)
TIME_TO_CONTAIN = Histogram(
    "watcher_time_to_contain_seconds",
    "Seconds from a bad release's publish (else its page) to the registry no longer serving it.",
    ["ecosystem"],
    buckets=(5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200, 604800),
)
MITIGATIONS = Counter(
    "watcher_mitigations_total",
    "Mitigations that are not containment, posted once each (deprecated, yanked, dist-tag moved, "
    "superseded: a newer release took the dist-tag).",
    ["ecosystem", "kind"],
)
CONTAINMENT_CHECKS = Counter(
    "watcher_containment_checks_total",
    "Registry re-reads of open incidents, by result (open / contained / error).",
    ["ecosystem", "result"],
)

# --- outbox (watcher.alerts.outbox) -------------------------------------------------------------
OUTBOX_DEPTH = Gauge(
    "watcher_outbox_depth",
    "Pages waiting in the outbox, per channel.",
    ["channel"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "watcher_outbox_oldest_age_seconds",
    "Age of the oldest page waiting in the outbox (0 when empty).",
)
OUTBOX_DEAD_LETTERS = Gauge(
    "watcher_outbox_dead_letters",
    "Pages given up on, kept with their reason.",
)
DELIVERIES = Counter(
    "watcher_deliveries_total",
    "Delivery attempts by channel and outcome (delivered / retry / failed / disable / dead).",
    ["channel", "outcome"],
)
CHANNEL_DISABLED = Gauge(
    "watcher_channel_disabled",
    "1 when a channel stopped sending because its endpoint is gone (e.g. webhook 410).",
    ["channel"],
)
APPROVAL_OUTCOMES = ("recorded", "repeated", "invalid", "unauthorized", "refused")
APPROVALS = Counter(
    "watcher_approvals_total",
    "Approval requests to the API by outcome: recorded (201), repeated (200, a retry), invalid "
    "(400), unauthorized (401), refused (403 outside the token's limits).",
    ["outcome"],
)
ORIGIN_CHECK_VERDICTS = ("quiet", "findings", "retry")
ORIGIN_CHECKS = Counter(
    "watcher_origin_checks_total",
    "Deferred origin checks (approval, tag, attestations) judged, by kind and verdict: quiet (as expected), "
    "findings, retry (could not judge yet).",
    ["kind", "verdict"],
)
ORIGIN_CHECK_OLDEST_DUE = Gauge(
    "watcher_origin_check_oldest_due_seconds",
    "How long the oldest due origin check has waited past its due time (0: none due): a release "
    "whose approval or tag is not being judged.",
)
PUBLISH_TO_PAGE = Histogram(
    "watcher_publish_to_page_seconds",
    "Seconds from a release's publish time to its page being accepted by a channel.",
    ["ecosystem", "channel"],
    buckets=(1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 900, 3600),
)

# --- credential liveness (watcher.verify) -----------------------------------------------------
VERIFICATIONS = Counter(
    "watcher_verifications_total",
    "Found credentials checked with their provider, by provider and verdict "
    "(live / revoked / unverified).",
    ["provider", "verdict"],
)

# --- every label value a counter can take, so each series exists at 0 from the start -------------
# (a counter first seen at 1 hides its first event from increase() and rate())
FEED_POLL_OUTCOMES = ("ok", "error")
FEED_EVENT_KINDS = ("release", "baseline", "removed", "unpublished")
PACKAGE_TOUCH_RESULTS = ("changed", "unchanged", "not_modified", "missing", "stale")
DELIVERY_OUTCOMES = ("delivered", "retry", "failed", "disable", "dead")
MITIGATION_KINDS = ("deprecated", "dist-tag-moved", "superseded", "yanked")
CONTAINMENT_RESULTS = ("open", "contained", "error")
STORE_OPERATIONS = (
    "lease",
    "ping",
    "claim",
    "scan",
    "feed",
    "outbox",
    "containment",
    "metrics",
    "origin",
)


def start_at_zero(
    ecosystems: Iterable[Ecosystem],
    feeds: Iterable[tuple[Ecosystem, str]],
    channels: Iterable[str],
) -> None:
    """Create every series the service can increment (watched ecosystems, its feeds, its
    channels × each label value), at 0, when the service starts."""
    for eco in {e.value for e in ecosystems}:
        for counter in (
            REGISTRY_REQUESTS,
            REGISTRY_RETRIES,
            REGISTRY_BYTES,
            REGISTRY_NOT_MODIFIED,
            FEED_STALE_RETRIES,
            SCAN_BYTES,
            SCAN_FAILURES,
            SCAN_RETRIES,
            INCIDENTS_OPENED,
            INCIDENTS_RESOLVED,
        ):
            counter.labels(eco)
        for category in Category:
            for severity in Severity:
                FINDINGS.labels(eco, category.value, severity.value)
        for result in PACKAGE_TOUCH_RESULTS:
            FEED_PACKAGE_TOUCHES.labels(eco, result)
        for kind in MITIGATION_KINDS:
            MITIGATIONS.labels(eco, kind)
        for result in CONTAINMENT_RESULTS:
            CONTAINMENT_CHECKS.labels(eco, result)
        TIME_TO_CONTAIN.labels(eco)
        PACKAGES_NOT_FOUND.labels(eco)
        for action in AUTO_CONTAINMENT_ACTIONS:
            for outcome in AUTO_CONTAINMENT_OUTCOMES:
                AUTO_CONTAINMENT.labels(eco, action, outcome)
        PUBLISH_TO_CONTAINED.labels(eco)
    for eco_, feed in feeds:
        for outcome in FEED_POLL_OUTCOMES:
            FEED_POLLS.labels(eco_.value, feed, outcome)
        for kind in FEED_EVENT_KINDS:
            FEED_EVENTS.labels(eco_.value, feed, kind)
        FEED_CURSOR_RESETS.labels(eco_.value, feed)
    for channel in channels:
        for outcome in DELIVERY_OUTCOMES:
            DELIVERIES.labels(channel, outcome)
    for operation in STORE_OPERATIONS:
        STORE_ERRORS.labels(operation)
    for outcome in APPROVAL_OUTCOMES:
        APPROVALS.labels(outcome)
    for kind in ("approval", "tag", "attestations"):
        for verdict in ORIGIN_CHECK_VERDICTS:
            ORIGIN_CHECKS.labels(kind, verdict)


AUTO_CONTAINMENT_ACTIONS = ("dist_tag", "deprecate", "unpublish", "github_revoke")
AUTO_CONTAINMENT_OUTCOMES = ("done", "failed", "dry_run", "skipped")
AUTO_CONTAINMENT = Counter(
    "watcher_auto_containment_total",
    "Automatic containment actions by outcome (done, failed, dry_run, skipped), each counted once.",
    ["ecosystem", "action", "outcome"],
)
PUBLISH_TO_CONTAINED = Histogram(
    "watcher_publish_to_contained_seconds",
    "Seconds from a bad release's publish to automatic containment taking it off its dist-tags.",
    ["ecosystem"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 900, 3600),
)
