"""`internal_names` matching (compiled once, fnmatch-style, PyPI names compared after PEP 503)
and what the public packument says about who published an internal name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.config import describe_plan, parse_config
from watcher.ecosystems.npm.internal_names import internal_name_steps, public_package_of
from watcher.ecosystems.pypi.client import normalize
from watcher.feeds.base import Watchlist
from watcher.feeds.internal import (
    InternalNameRule,
    InternalNames,
    InternalNameSighting,
    InternalNameWatch,
    PublicPackage,
    Publish,
)
from watcher.incidents.internal_names import InternalNameReporter
from watcher.model import Ecosystem, RunbookStep
from watcher.service.containment import ContainmentWatcher
from watcher.store import open_store


class _NoLookup:
    async def public_package(self, name: str) -> None:
        raise AssertionError("not read")

    def internal_name_runbook(self, package: object) -> list[object]:
        return []


class _NoSink:
    async def published(self, sighting: object) -> None:
        raise AssertionError("not reported")

    async def gone(self, ecosystem: object, name: str, feed: str) -> None:
        raise AssertionError("not reported")


def test_patterns_and_exact_names_match_and_others_do_not() -> None:
    names = InternalNames(
        [
            InternalNameRule("@acme-internal/*", "platform"),
            InternalNameRule("acme-*", "web"),
            InternalNameRule("billing-core", "billing"),
        ]
    )
    assert names.match("@acme-internal/db") == InternalNameRule("@acme-internal/*", "platform")
    assert names.match("acme-ui") == InternalNameRule("acme-*", "web")
    assert names.match("billing-core") == InternalNameRule("billing-core", "billing")
    assert names.match("billing-core-x") is None, "an exact entry is not a prefix"
    assert names.match("@acme/db") is None and names.match("left-pad") is None
    assert names.match("ACME-ui") is None, "npm names are compared as written"
    assert [name for name, _ in names.exact_rules()] == ["billing-core"]


def test_pypi_names_compare_after_pep_503_patterns_included() -> None:
    names = InternalNames(
        [InternalNameRule("Acme_*", "web"), InternalNameRule("Billing.Core", "billing")],
        normalize,
    )
    assert names.match("acme-ui") is not None and names.match("ACME.UI") is not None
    assert names.match("billing_core") == InternalNameRule("Billing.Core", "billing")
    assert names.match("acmeui") is None


def test_watched_names_are_never_candidates() -> None:
    watch = InternalNameWatch(
        Ecosystem.NPM,
        InternalNames([InternalNameRule("@acme/*", "web")]),
        _NoLookup(),
        _NoSink(),
        Watchlist.of(["@acme/app", "@acme/tools-*"]),
    )
    found = watch.candidates(["@acme/app", "@acme/tools-cli", "@acme/secret", "other"])
    assert list(found) == ["@acme/secret"]


def test_the_packument_says_who_published_each_version_oldest_first() -> None:
    doc = {
        "name": "@acme/secret",
        "maintainers": [{"name": "squatter", "email": "s@example.invalid"}],
        "time": {"1.0.1": "2026-12-01T10:00:00.000Z", "1.0.0": "2026-12-01T09:00:00.000Z"},
        "versions": {
            "1.0.1": {"_npmUser": {"name": "squatter", "email": "s@example.invalid"}},
            "1.0.0": {"_npmUser": {"name": "other"}},
        },
    }
    package = public_package_of(doc, "@acme/secret")
    assert [(p.version, p.publisher) for p in package.publishes] == [
        ("1.0.0", "other"),
        ("1.0.1", "squatter <s@example.invalid>"),
    ]
    assert package.maintainers == ("squatter <s@example.invalid>",)
    texts = " ".join(s.text for s in internal_name_steps("@acme/secret", "http://r.invalid/"))
    assert "@acme:registry" not in texts and "@acme" in texts and "proxy" in texts


# ------------------------------------------------------------------- the incident, in a store

CONFIG = """
store: {path: unused.db}
registries:
  npm: {url: "http://127.0.0.1:9/"}
packages:
  - {ecosystem: npm, name: "@acme/app", owner: web}
owners:
  web:
    console: true
  platform:
    console: true
internal_names:
  - {ecosystem: npm, pattern: "@acme/*", owner: platform}
"""


def sighting(*versions: str) -> InternalNameSighting:
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    publishes = tuple(
        Publish(v, start + timedelta(minutes=i), "squatter <s@example.invalid>")
        for i, v in enumerate(versions)
    )
    return InternalNameSighting(
        Ecosystem.NPM,
        InternalNameRule("@acme/*", "platform"),
        PublicPackage("@acme/secret", publishes, ("squatter",), "http://r.invalid/@acme%2fsecret"),
        "npm-changes",
        start + timedelta(hours=1),
        (RunbookStep("Report it"),),
    )


@pytest.mark.asyncio
async def test_one_incident_per_name_one_update_per_later_version_and_gone_resolves(
    tmp_path: Path,
) -> None:
    config = parse_config(CONFIG)
    async with await open_store(tmp_path / "state.db") as store:
        reporter = InternalNameReporter(store, config)
        await reporter.published(sighting("1.0.0", "1.0.1"))
        await reporter.published(sighting("1.0.0", "1.0.1"))  # seen again (a restart, a replica)
        [incident] = await store.open_incidents()
        assert incident.dedup_key == "watcher/npm/@acme/secret" and incident.version == "1.0.1"
        assert [f.rule for f in incident.findings] == ["internal-name-published"]
        assert "1.0.0 by squatter" in incident.findings[0].message
        assert (await store.counts()).outbox_depth == {"platform/console": 1}, "opened once"

        await reporter.published(sighting("1.0.0", "1.0.1", "2.0.0"))
        await reporter.published(sighting("1.0.0", "1.0.1", "2.0.0"))
        assert (await store.counts()).outbox_depth == {"platform/console": 2}, "one update"
        notes = await store.incident_notes(incident.id or 0)
        assert sorted(notes) == ["published-1.0.0", "published-1.0.1", "published-2.0.0"]

        # someone else's package: the containment watcher does not probe it (no registry here)
        assert await ContainmentWatcher(store, config, {}).check_once() == []

        await reporter.gone(Ecosystem.NPM, "@acme/other", "npm-changes")  # no incident: nothing
        await reporter.gone(Ecosystem.NPM, "@acme/secret", "npm-changes")
        await reporter.gone(Ecosystem.NPM, "@acme/secret", "npm-changes")
        assert await store.open_incidents() == []
        assert (await store.counts()).outbox_depth == {"platform/console": 3}, "resolved once"


def test_check_config_says_how_each_internal_name_is_followed() -> None:
    poll = describe_plan(
        parse_config(
            CONFIG
            + '  - {ecosystem: npm, pattern: "billing-core", owner: platform}\n'
            + '  - {ecosystem: pypi, pattern: "acme-*", owner: platform}\n'
        )
    )
    assert "internal name npm @acme/* (owner platform): NOT followed" in poll
    assert "internal name npm billing-core (owner platform): polled by name" in poll
    followed = describe_plan(
        parse_config(
            CONFIG.replace(
                '"http://127.0.0.1:9/"}',
                '"http://127.0.0.1:9/", changes_url: "http://127.0.0.1:9/registry/_changes"}',
            )
        )
    )
    assert "internal name npm @acme/* (owner platform): every name the public registry's" in (
        followed
    )
