"""The shared incident form and summary lines; `make_incident` is used by every channel's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watcher.alerts.payload import (
    event_data,
    first_action,
    incident_dict,
    resolution_line,
    summary_line,
    truncate,
)
from watcher.incidents.runbook import RunbookInputs, build_runbook
from watcher.model import (
    AlertEvent,
    Category,
    Ecosystem,
    EventType,
    Finding,
    Incident,
    RunbookStep,
    Severity,
)
from watcher.timefmt import human_duration

NOW = datetime(2026, 3, 31, 2, 0, tzinfo=UTC)
PUBLISHED = NOW - timedelta(hours=1)


def finding(
    rule: str = "sourcemap-embedded-sources",
    category: Category = Category.SOURCE_MAP,
    severity: Severity = Severity.CRITICAL,
    path: str = "package/cli.js.map",
    message: str = "source map embeds 12 first-party source files (3,400 lines)",
    **evidence: object,
) -> Finding:
    return Finding(rule, category, severity, path, message, evidence=dict(evidence))


def make_incident(
    findings: list[Finding] | None = None,
    *,
    ecosystem: Ecosystem = Ecosystem.NPM,
    name: str = "@acme/cli",
    version: str = "2.1.88",
    test: bool = False,
    registry_url: str | None = "http://127.0.0.1:4873/",
) -> Incident:
    findings = findings if findings is not None else [finding()]
    runbook = build_runbook(
        RunbookInputs(
            ecosystem,
            name,
            version,
            findings,
            NOW,
            PUBLISHED,
            registry_url,
            ["latest"],
            "2.1.87",
        ),
        revoke_hints={},
    )
    return Incident(
        dedup_key=Incident.key_for(ecosystem, name, version),
        ecosystem=ecosystem,
        name=name,
        version=version,
        owner="platform",
        opened_at=NOW,
        findings=findings,
        published_at=PUBLISHED,
        runbook=runbook,
        links={"Version page": f"http://127.0.0.1:4873/-/web/detail/{name}"},
        test=test,
    )


def opened(incident: Incident, event_id: str = "evt-1") -> AlertEvent:
    return AlertEvent(EventType.OPENED, incident, event_id)


def resolved(
    incident: Incident, event_id: str = "evt-9", after: timedelta | None = None
) -> AlertEvent:
    incident.resolved_at = NOW + (after or timedelta(hours=2, minutes=15))
    incident.resolution = "version unpublished"
    return AlertEvent(EventType.RESOLVED, incident, event_id, "version unpublished")


def test_incident_dict_carries_the_page_contract_and_never_evidence() -> None:
    incident = make_incident([finding(first_party_files=12, match="npm_AAAAsecret")])
    data = incident_dict(incident)
    assert data["dedup_key"] == "watcher/npm/@acme/cli/2.1.88"
    assert {
        "package",
        "ecosystem",
        "version",
        "published_at",
        "owner",
        "findings",
        "runbook",
    } <= set(data)
    assert data["published_at"] == "2026-03-31T01:00:00Z"
    assert set(data["findings"][0]) == {
        "rule",
        "category",
        "severity",
        "path",
        "line",
        "message",
        "new",
    }
    assert "npm_AAAAsecret" not in str(data), "evidence must never reach a payload"


def test_findings_are_listed_worst_first() -> None:
    low = finding("size-growth", Category.SIZE_ANOMALY, Severity.LOW, "package", "grew 40x")
    crit = finding()
    data = incident_dict(make_incident([low, crit]))
    assert [f["severity"] for f in data["findings"]] == ["critical", "low"]


def test_summary_names_package_version_and_worst_finding() -> None:
    line = summary_line(make_incident([finding(), finding(path="package/b.js.map")]))
    assert line.startswith("[npm] @acme/cli@2.1.88 — critical source-map:")
    assert line.endswith("(+1 more)")


def test_test_incidents_are_marked() -> None:
    assert summary_line(make_incident(test=True)).startswith("[TEST] ")


def test_first_action_is_the_first_runbook_step_with_its_command() -> None:
    incident = make_incident()
    assert (
        first_action(incident)
        == f"{incident.runbook[0].text} → npm unpublish @acme/cli@2.1.88 --otp=<code>"
    )
    incident.runbook = [RunbookStep("Open the release page", url="http://x.test/p")]
    assert first_action(incident) == "Open the release page → http://x.test/p"


def test_resolution_says_what_contained_it_and_how_long_after_publish() -> None:
    event = resolved(make_incident())
    assert resolution_line(event.incident) == (
        "Resolved: @acme/cli@2.1.88 — version unpublished; contained 3h15m after publish"
    )
    assert event_data(event)["time_to_contain_s"] == 3 * 3600 + 15 * 60


def test_helpers() -> None:
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("abc", 4) == "abc"
    assert [human_duration(s) for s in (20, 125, 3600 * 5 + 60, 86400 * 2 + 3600)] == [
        "20s",
        "2m05s",
        "5h01m",
        "2d1h",
    ]


def test_a_superseded_update_is_brief_on_every_channel_and_other_updates_are_not() -> None:
    """The update kind rides in the event id (`…#incident.updated:<kind>`): a newer release
    taking the dist-tag is one line everywhere (PagerDuty's summary, the webhook's `brief`)."""
    from watcher.alerts.pagerduty import build_event  # noqa: PLC0415
    from watcher.incidents.lifecycle import event_id_for  # noqa: PLC0415

    incident = make_incident()
    line = "a newer release took the dist-tag (latest → 2.1.89); 2.1.88 is still installable"
    brief = AlertEvent(
        EventType.UPDATED,
        incident,
        event_id_for(incident.dedup_key, EventType.UPDATED, "superseded"),
        line,
    )
    other = AlertEvent(
        EventType.UPDATED,
        incident,
        event_id_for(incident.dedup_key, EventType.UPDATED, "deprecated"),
        "deprecated on the registry",
    )
    assert brief.kind == "superseded" and brief.brief
    assert other.kind == "deprecated" and not other.brief
    assert not opened(incident, event_id_for(incident.dedup_key, EventType.OPENED)).brief
    assert event_data(brief)["brief"] is True and event_data(other)["brief"] is False
    summary = build_event(brief, "r" * 32, NOW)["payload"]["summary"]
    assert summary == f"UPDATE on [npm] @acme/cli@2.1.88: {line}; the incident stays open"
    assert build_event(other, "r" * 32, NOW)["payload"]["summary"].startswith("UPDATE (deprecated")
