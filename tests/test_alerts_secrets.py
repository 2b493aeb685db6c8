"""No secret value in any page: scan a real tarball carrying fake credentials built at test time,
page its findings through every channel to loopback receivers, and search every captured byte."""

from __future__ import annotations

import base64
import gzip
import io
import secrets
import string
from pathlib import Path

from structlog.testing import capture_logs

from tests.builders import npm_tarball
from tests.receivers import pagerduty_receiver, slack_receiver, webhook_receiver
from tests.test_alerts_payload import NOW, PUBLISHED
from watcher.alerts import ConsoleChannel, PagerDutyChannel, SlackChannel, WebhookChannel
from watcher.alerts.base import Channel, Outcome
from watcher.incidents.runbook import RunbookInputs, build_runbook
from watcher.model import AlertEvent, Category, Ecosystem, EventType, Finding, Incident, Severity
from watcher.scanning.scan import ScanRequest, scan_artifact

_ALNUM = string.ascii_letters + string.digits


def _random(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def fake_tokens() -> dict[str, str]:
    """Credential-shaped values assembled from pieces so no committed file holds one."""
    return {
        "npm": "npm" + "_" + _random(36),
        "aws_secret": _random(40, _ALNUM + "/+"),
        "github": "gh" + "p_" + _random(36),
        "slack_hook": "https://hooks.slack"
        + ".com/services/T"
        + _random(8)
        + "/B"
        + _random(8)
        + "/"
        + _random(24),
    }


def leaky_tarball(path: Path, tokens: dict[str, str]) -> Path:
    return npm_tarball(
        path,
        {
            ".npmrc": f"//127.0.0.1:4873/:_authToken={tokens['npm']}\n",
            ".env": f"AWS_SECRET_ACCESS_KEY={tokens['aws_secret']}\nSLACK_WEBHOOK={tokens['slack_hook']}\n",
            "lib/config.js": f'module.exports = {{ token: "{tokens["github"]}" }};\n',
            "index.js": "module.exports = require('./lib/config');\n",
        },
        name="@acme/leaky",
        version="1.0.1",
    )


async def test_no_secret_value_reaches_any_channel(tmp_path: Path) -> None:
    tokens = fake_tokens()
    tarball = leaky_tarball(tmp_path / "acme-leaky-1.0.1.tgz", tokens)
    report = scan_artifact(ScanRequest(tarball, Ecosystem.NPM, "@acme/leaky", "1.0.1"))
    by_rule = {f.rule: f for f in report.findings}
    # the scan really saw the credentials (otherwise this test would prove nothing)
    assert by_rule["npmrc-file"].severity is Severity.CRITICAL
    assert by_rule["dotenv-file"].severity is Severity.CRITICAL
    findings = list(report.findings)
    # a check that wrongly kept a raw value in its evidence must still not leak it
    findings.append(
        Finding(
            "hypothetical-bad-check",
            Category.SECRET,
            Severity.HIGH,
            "package/index.js",
            "credential found",
            evidence={"match": tokens["github"], "raw": tokens["npm"]},
        )
    )
    incident = Incident(
        dedup_key=Incident.key_for(Ecosystem.NPM, "@acme/leaky", "1.0.1"),
        ecosystem=Ecosystem.NPM,
        name="@acme/leaky",
        version="1.0.1",
        owner="platform",
        opened_at=NOW,
        findings=findings,
        published_at=PUBLISHED,
        runbook=build_runbook(
            RunbookInputs(
                Ecosystem.NPM,
                "@acme/leaky",
                "1.0.1",
                findings,
                NOW,
                PUBLISHED,
                "http://127.0.0.1:4873/",
                ["latest"],
                "1.0.0",
            )
        ),
    )
    assert incident.runbook[0].text.startswith(
        "Exposed credential (not verified): npm token in `package/.npmrc`"
    )
    events = [
        AlertEvent(EventType.OPENED, incident, "evt-1"),
        AlertEvent(EventType.UPDATED, incident, "evt-2", "deprecated on the registry"),
    ]
    whsec = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    console_out = io.StringIO()
    async with (
        pagerduty_receiver() as pd,
        slack_receiver() as slack,
        webhook_receiver(whsec) as hook,
    ):
        channels: list[Channel] = [
            PagerDutyChannel("platform/pagerduty", secrets.token_hex(16), url=pd.url),
            SlackChannel("platform/slack", slack.url),
            WebhookChannel("platform/webhook", hook.url, whsec),
            ConsoleChannel("platform/console", console_out),
        ]
        with capture_logs() as logs:
            for channel in channels:
                for event in events:
                    assert (await channel.send(event)).outcome is Outcome.DELIVERED, channel.name
                incident.resolved_at, incident.resolution = NOW, "version unpublished"
                assert (await channel.send(AlertEvent(EventType.RESOLVED, incident, "evt-3"))).ok
                incident.resolved_at = incident.resolution = None
                await channel.close()
        receivers = (pd, slack, hook)
        for receiver in receivers:
            receiver.assert_valid()
        captured = [
            c.body.decode("utf-8", "replace") + repr(c.headers)
            for r in receivers
            for c in r.requests
        ]
    assert len(captured) == 9
    captured += [console_out.getvalue(), repr(logs)]
    unpacked = gzip.decompress(tarball.read_bytes())
    for name, token in tokens.items():
        assert token.encode() in unpacked, f"{name} token is really in the scanned tarball"
        for text in captured:
            assert token not in text, f"{name} token leaked into a page"
    # and the pages did carry the findings (paths), so the search above looked at real content
    assert any("package/.npmrc" in text for text in captured[:9])
