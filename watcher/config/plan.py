"""The plan, as `watcher check-config` prints it: what the service will do, secrets masked."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from watcher import ecosystems
from watcher.config.schema import (
    AutoContainmentConfig,
    Config,
    OwnerConfig,
    RetryPolicy,
)
from watcher.intent.model import Expectations
from watcher.sections import mask_url
from watcher.units import format_duration, format_size

_HIDDEN = "****"


def _auto_line(auto: AutoContainmentConfig) -> str:
    """What `containment.auto` will do, in one line (never a token)."""
    npm = [
        what
        for on, what in (
            (auto.npm.dist_tag, "dist-tags back to the previous good version"),
            (auto.npm.deprecate, "deprecate"),
            (auto.npm.unpublish, "unpublish inside npm's 72-hour window"),
        )
        if on
    ]
    parts = [
        f"at {auto.at.value} and above, releases younger than {format_duration(auto.within)}",
        f"npm: {', '.join(npm) or 'nothing'}",
    ]
    if auto.github_revoke:
        where = mask_url(auto.github_api_url) if auto.github_api_url else "api.github.com"
        parts.append(f"GitHub tokens reported for revocation to {where}")
    parts.append(f"at most {auto.max_per_hour} actions per package an hour")
    if auto.dry_run:
        parts.append("DRY RUN (records and pages, changes nothing)")
    return "; ".join(parts)


def _channel_line(kind: str, owner: OwnerConfig) -> str:
    if kind == "pagerduty" and owner.pagerduty:
        where = mask_url(owner.pagerduty.url) if owner.pagerduty.url else "default endpoint"
        return f"pagerduty (Events API v2, {where}, routing_key {_HIDDEN})"
    if kind == "slack" and owner.slack and owner.slack.bot:
        return (
            f"slack (bot token {_HIDDEN}, channel {owner.slack.channel}: one message per "
            "incident, updates in its thread, edited on resolution)"
        )
    if kind == "slack" and owner.slack:
        return f"slack (incoming webhook, webhook_url {_HIDDEN})"
    if kind == "webhook" and owner.webhook:
        return (
            f"webhook (POST {mask_url(owner.webhook.url)}, Standard Webhooks signature, "
            f"secret {_HIDDEN}, timeout {format_duration(owner.webhook.timeout)})"
        )
    return "console (stdout + log event)"


def _retry_line(policy: RetryPolicy) -> str:
    limits = []
    if policy.max_attempts is not None:
        limits.append(f"{policy.max_attempts} attempts")
    if policy.give_up_after is not None:
        limits.append(f"{format_duration(policy.give_up_after)}")
    until = " or ".join(limits) if limits else "forever"
    return (
        f"backoff {format_duration(policy.initial)} x{policy.multiplier:g} up to "
        f"{format_duration(policy.max)} (±{policy.jitter:.0%} jitter), gives up after {until}"
    )


def _private_lines(config: Config) -> list[str]:
    """What the owners said is private: index files, canary ids (values never), internal names."""
    lines = []
    owned = [(f"owner {name}", o.fingerprints, o.canaries) for name, o in config.owners.items()]
    for who, indexes, canaries in [("all packages", config.fingerprints, config.canaries), *owned]:
        if indexes:
            lines.append(
                f"  private fingerprints ({who}): {', '.join(map(str, indexes))}; a file counts "
                f"at {config.scan.fingerprint_threshold:.0%} of its distinctive lines; key "
                f"{_HIDDEN}"
            )
        if canaries:
            ids = ", ".join(c.id for c in canaries)
            lines.append(f"  canaries ({who}): {ids} (values {_HIDDEN})")
    for entry in config.internal_names:
        eco = entry.ecosystem.value
        if config.registries.for_ecosystem(entry.ecosystem).mode == "changes":
            how = "every name the public registry's changes feed shows is matched"
        elif entry.is_pattern:
            how = f"NOT followed: a pattern needs registries.{eco}.changes_url"
        else:
            how = "polled by name on the public registry (absent is the expected state)"
        lines.append(
            f"  internal name {eco} {entry.pattern} (owner {entry.owner}): {how}; "
            "internal-name-published when published there"
        )
    return (["private (owners' statements):", *lines]) if lines else []


def _expect_line(expect: Expectations) -> str:
    """What a package's releases must be, secrets masked."""
    parts = []
    if expect.approval:
        parts.append("an approval from the gate for every artifact")
    if expect.tag is not None:
        auth = f", auth header {_HIDDEN}" if expect.tag.auth_header else ""
        parts.append(f"tag {expect.tag.pattern} in {mask_url(expect.tag.repository)}{auth}")
    if expect.publishers is not None:
        parts.append(f"published by {', '.join(expect.publishers)}")
    if expect.provenance is not None:
        named = [
            f"{key} {value}"
            for key, value in (
                ("repository", expect.provenance.repository),
                ("workflow", expect.provenance.workflow),
            )
            if value
        ]
        parts.append(f"provenance from {' and '.join(named)}")
    return "expects " + "; ".join(parts)


def describe_plan(config: Config, *, today: date | None = None) -> str:
    """What the service will do with this configuration, secrets masked."""
    today = today or date.today()
    lines: list[str] = []
    add: Callable[[str], None] = lines.append
    if config.store.url is not None:
        add(
            f"store: {config.store.location} (PostgreSQL, shared by replicas; "
            f"leases of {format_duration(config.store.lease)})"
        )
    else:
        add(
            f"store: {config.store.path} ({config.store.path.absolute()}; SQLite, WAL, "
            f"synchronous={config.store.synchronous})"
        )
    add(f"server: http://{config.server.listen} (/metrics /healthz /readyz)")
    tokens = config.server.api_tokens
    if tokens:
        where = config.server.api_listen or config.server.listen
        add(
            f"  approvals API: http://{where}/api/v1/approvals (put TLS in front); "
            f"{len(tokens)} token(s), values {_HIDDEN}:"
        )
        for token in tokens:
            limited = [
                f"{kind} {', '.join(values)}"
                for kind, values in (("owners", token.owners), ("packages", token.packages))
                if values
            ]
            add(f"    - {token.name}: {'; '.join(limited) if limited else 'no limit'}")
    add("registries:")
    for unit in ecosystems.all_units():
        eco = unit.name
        reg = config.registries.for_ecosystem(eco)
        url = mask_url(reg.url) if reg.url else f"the machine's {unit.machine_setting} setting"
        how = (
            f"follow changes feed {mask_url(reg.changes_url)}"
            if reg.changes_url
            else f"poll each package every {format_duration(reg.poll_interval)}"
        )
        add(f"  {eco.value}: {url}; {how}; timeout {format_duration(reg.timeout)}")
        lines.extend(reg.plan_lines())
    add(
        f"watching {len(config.packages)} package entr{'y' if len(config.packages) == 1 else 'ies'}:"
    )
    width = max(len(p.name) for p in config.packages)
    for package in config.packages:
        reg = config.registries.for_ecosystem(package.ecosystem)
        how = (
            "changes feed"
            if reg.mode == "changes"
            else f"poll {format_duration(reg.poll_interval)}"
        )
        how = reg.package_route(package.name, how)
        kind = " (pattern)" if package.is_pattern else ""
        if config.containment.auto is not None and not package.auto_contain:
            kind += "; auto_contain: false (no automatic containment)"
        add(
            f"  {package.ecosystem.value:<4} {package.name:<{width}}  owner {package.owner}; "
            f"{how}{kind}"
        )
        expect = config.expectations(package.ecosystem, package.name)
        if not expect.empty:
            add(f"    {_expect_line(expect)}")
    add("owners and channels (pages delivered through a durable outbox):")
    for name, owner in config.owners.items():
        add(f"  {name}:")
        for kind in owner.channel_kinds():
            add(f"    - {_channel_line(kind, owner)}")
    policy = config.policy
    add(f"policy: page at {policy.page_at.value} and above")
    add(
        f"  approvals awaited {format_duration(policy.approval_grace)}, tags "
        f"{format_duration(policy.tag_grace)} after first sight"
    )
    if policy.internal_domains:
        add(f"  internal domains: {', '.join(policy.internal_domains)}")
    for rule in policy.allow:
        status = "active" if rule.active_on(today) else "EXPIRED, not applied"
        add(
            f"  allow {rule.rule} in {rule.package} at {rule.path} until {rule.expires} "
            f"({status}): {rule.reason}"
        )
    lines.extend(_private_lines(config))
    scan = config.scan
    limits = scan.limits
    add(
        f"scan: {scan.workers} worker process(es), {scan.concurrency} release(s) at once, "
        f"download timeout {format_duration(scan.download_timeout)}, "
        f"max download {format_size(scan.max_download_bytes)}"
    )
    add(
        f"  archive limits: member {format_size(limits.max_member_bytes)}, total "
        f"{format_size(limits.max_total_bytes)}, {limits.max_members} members, ratio "
        f"{limits.max_ratio:g}"
    )
    add(f"  scan retries: {_retry_line(config.retry.scan)}")
    add(f"  delivery retries: {_retry_line(config.retry.outbox)}")
    add(
        "  a channel disabled by its endpoint is tried again after "
        f"{format_duration(config.outbox.disabled_recheck)}"
    )
    if config.containment.enabled:
        add(
            "containment: re-read open incidents every "
            f"{format_duration(config.containment.check_interval)}"
        )
        auto = config.containment.auto
        if auto is not None:
            add(f"  automatic: {_auto_line(auto)}")
    else:
        add("containment: disabled (incidents are resolved by hand)")
    verify = config.verify
    if verify.enabled:
        urls = ", ".join(f"{n} {mask_url(p.url)}" for n, p in sorted(verify.providers.items()))
        add(
            "verify: found credentials are checked with their own providers "
            f"(timeout {format_duration(verify.timeout)}, at most {verify.rate:g}/s per provider; "
            f"{urls or 'their documented APIs'}; npm on the package's registry)"
        )
    else:
        add("verify: disabled (found credentials are not checked with their providers)")
    add(
        f"shutdown grace period {format_duration(config.shutdown.grace_period)}; "
        f"log format {config.log.format}, level {config.log.level}"
    )
    return "\n".join(lines)
