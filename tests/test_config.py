"""The configuration model: parsing, validation messages, env expansion, secrets and the plan."""

from __future__ import annotations

import base64
from datetime import date, timedelta
from pathlib import Path

import pytest

from watcher.config import (
    Config,
    channel_id,
    describe_plan,
    expand_env,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)
from watcher.errors import ConfigError
from watcher.model import Ecosystem, Severity
from watcher.scanning.archive import ArchiveLimits
from watcher.scanning.checks.base import ScanOptions

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """
packages:
  - {ecosystem: npm, name: left-pad, owner: demo}
owners:
  demo: {console: true}
"""


def fake_secret(*parts: str) -> str:
    """Credentials are assembled at test time so no real-looking one is ever committed."""
    return "".join(parts)


@pytest.fixture
def secrets() -> dict[str, str]:
    return {
        "PD_ROUTING_KEY": fake_secret("R0UT", "INGKEY", "x" * 20),
        "PD_ROUTING_KEY_PYTHON": fake_secret("PYR0", "UTING", "y" * 20),
        "SLACK_WEBHOOK_URL": fake_secret(
            "https://hooks.chat.example/services/", "T0/B0/", "z" * 24
        ),
        "SLACK_WEBHOOK_URL_PYTHON": fake_secret("https://hooks.chat.example/services/", "T1/B1/q"),
        "WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"k" * 32).decode(),
        "NPM_CHANGES_URL": "http://127.0.0.1:5984/registry/_changes",
    }


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="test.yaml", env=env or {})
    message = str(info.value)
    header, *lines = message.splitlines()
    assert header.startswith("test.yaml: ")
    return [line.strip() for line in lines]


# ---------------------------------------------------------------------------------- files


def test_example_config_is_valid_without_any_environment() -> None:
    config = load_config(REPO / "config" / "watcher.example.yaml", env={})
    assert config.store.path == Path("watcher-state.db")
    assert config.registries.npm.url is None and config.registries.pypi.url is None
    assert config.registries.npm.mode == "poll"
    assert {(p.ecosystem, p.name) for p in config.packages} >= {
        (Ecosystem.NPM, "left-pad"),
        (Ecosystem.PYPI, "six"),
    }
    assert config.owners["demo"].channel_kinds() == ["console"]


def test_production_config_is_valid_with_its_variables(secrets: dict[str, str]) -> None:
    config = load_config(REPO / "config" / "watcher.production.yaml", env=secrets)
    platform = config.owners["platform"]
    assert platform.channel_kinds() == ["pagerduty", "slack", "webhook", "console"]
    assert platform.pagerduty is not None
    assert platform.pagerduty.routing_key.get_secret_value() == secrets["PD_ROUTING_KEY"]
    assert config.registries.npm.url is None  # ${NPM_REGISTRY_URL:-} empty = the machine's
    assert config.registries.npm.mode == "changes"
    assert config.store.path == Path("/var/lib/registry-watcher/state.db")
    assert config.scan.limits.max_member_bytes == 256 * 1024**2
    assert config.retry.outbox.give_up_after == 86400.0


def test_production_config_names_every_unset_variable() -> None:
    problems = errors_of((REPO / "config" / "watcher.production.yaml").read_text())
    assert (
        "owners.platform.pagerduty.routing_key: environment variable PD_ROUTING_KEY is not set "
        "(write ${PD_ROUTING_KEY:-default} to give a default)" in problems
    )
    assert any(
        p.startswith("owners.platform.webhook.secret: environment variable") for p in problems
    )
    # an unset variable is reported once, not again as an invalid empty value
    assert len([p for p in problems if "routing_key" in p and "PYTHON" not in p]) == 1


def test_design_document_example_parses(secrets: dict[str, str]) -> None:
    text = """
store: {path: ./watcher-state.db}
server: {listen: "127.0.0.1:9464"}
registries:
  npm: {url: null, changes_url: "${NPM_CHANGES_URL}", poll_interval: 30s}
  pypi: {url: null, poll_interval: 60s}
packages:
  - {ecosystem: npm, name: "@acme/cli", owner: platform}
  - {ecosystem: npm, name: "@acme/*", owner: platform}
  - {ecosystem: pypi, name: acme-sdk, owner: python}
owners:
  platform:
    pagerduty: {routing_key: "${PD_ROUTING_KEY}"}
    slack: {webhook_url: "${SLACK_WEBHOOK_URL}"}
    webhook: {url: https://hooks.example/watcher, secret: "${WEBHOOK_SECRET}"}
    console: true
  python: {console: true}
containment: {check_interval: 60s}
policy:
  page_at: high
  internal_domains: [corp.acme.example]
  allow:
    - {package: "@acme/cli", rule: sourcemap-embedded-sources, path: "package/dist/*.map",
       reason: "public OSS build", expires: 2027-01-01}
"""
    config = parse_config(text, env=secrets)
    assert config.registries.npm.poll_interval == 30.0
    assert config.registries.pypi.poll_interval == 60.0
    assert config.containment.check_interval == 60.0
    assert config.policy.page_at is Severity.HIGH
    assert config.policy.allow[0].expires == date(2027, 1, 1)
    assert config.packages[1].is_pattern and not config.packages[0].is_pattern
    # an exact entry wins over the scope pattern; a pattern covers the rest of the scope
    assert config.owner_of(Ecosystem.NPM, "@acme/cli") == "platform"
    assert config.owner_of(Ecosystem.NPM, "@acme/other") == "platform"
    assert config.owner_of(Ecosystem.NPM, "@other/cli") is None
    assert config.owner_of(Ecosystem.PYPI, "Acme_SDK") == "python"  # PEP 503 normalization
    assert ("platform", "webhook") in config.channels()
    assert channel_id("platform", "webhook") == "platform/webhook"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "nope.yaml")


# -------------------------------------------------------------------------- error messages


def test_wrong_ecosystem_names_the_key_path_and_the_choices() -> None:
    problems = errors_of(
        """
packages:
  - {ecosystem: npm, name: a, owner: demo}
  - {ecosystem: pypi, name: b, owner: demo}
  - {ecosystem: rubygems, name: rails, owner: demo}
owners: {demo: {console: true}}
"""
    )
    assert problems == ["packages[2].ecosystem: expected 'npm' or 'pypi', got 'rubygems'"]


def test_every_problem_is_listed_at_once() -> None:
    problems = errors_of(
        """
registries:
  npm: {pol_interval: 30s, url: "ftp://mirror.example/npm"}
packages:
  - {ecosystem: npm, name: "Bad Name", owner: demo}
owners:
  demo: {}
containment: {check_interval: 5 parsecs}
policy: {page_at: severe}
"""
    )
    assert problems == [
        "registries.npm.url: expected an http(s) URL, got 'ftp://mirror.example/npm'",
        "registries.npm.pol_interval: unknown key; did you mean 'poll_interval'?",
        "packages[0].name: expected a valid npm package name or pattern, got 'Bad Name'",
        "owners.demo: expected at least one channel (pagerduty, slack, webhook or console: true)",
        "containment.check_interval: expected a duration like 30s, 5m, 1h, 1h30m or 500ms, "
        "got '5 parsecs'",
        "policy.page_at: expected 'critical', 'high', 'medium', 'low' or 'info', got 'severe'",
    ]


def test_unknown_top_level_key_is_an_error() -> None:
    problems = errors_of(MINIMAL + "polcy: {page_at: low}\n")
    assert problems == ["polcy: unknown key; did you mean 'policy'?"]


def test_unknown_key_without_a_close_match_lists_the_known_ones() -> None:
    problems = errors_of(MINIMAL + "server: {port: 9000}\n")
    assert problems == [
        "server.port: unknown key (expected one of: listen, api_listen, api_tokens)"
    ]


def test_required_sections_are_named_when_missing() -> None:
    assert errors_of("") == ["packages: required key missing", "owners: required key missing"]


def test_cross_references_are_checked() -> None:
    problems = errors_of(
        """
packages:
  - {ecosystem: npm, name: "@acme/*", owner: platfrom}
  - {ecosystem: pypi, name: Acme_SDK, owner: demo}
  - {ecosystem: pypi, name: acme-sdk, owner: demo}
owners: {demo: {console: true}}
"""
    )
    assert problems == [
        "packages[0].owner: unknown owner 'platfrom' (owners defined: demo)",
        "packages[0].name: pattern '@acme/*' needs a changes feed: set registries.npm.changes_url "
        "(poll mode watches named packages only)",
        "packages[2].name: 'acme-sdk' is already listed at packages[1]",
    ]


def test_duplicate_yaml_keys_are_errors() -> None:
    with pytest.raises(ConfigError, match="found duplicate key 'owners'"):
        parse_config(MINIMAL + "owners: {other: {console: true}}\n", env={})


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "watcher.yaml"
    path.write_text(
        "packages:\n  - {ecosystem: npm, name: a, owner: t\nowners: {t: {console: true}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}:3:7: not valid YAML: expected ',' or '}}', but got ':'")
    assert "line 2, column 5" in message, "where the unclosed mapping began"
    assert "<unicode string>" not in message


@pytest.mark.parametrize("value", ['"yes"', '"true"', "1", '"on"'])
def test_a_boolean_key_takes_only_true_or_false(value: str) -> None:
    text = MINIMAL.replace(
        "{console: true}", "{console: true}\ncontainment: {enabled: " + value + "}"
    )
    text = text.replace("demo: {console: true}", f"demo: {{console: {value}}}")
    assert errors_of(text) == [
        f"owners.demo.console: expected a valid boolean, got {value.strip(chr(34))!r}"
        if value.startswith('"')
        else f"owners.demo.console: expected a valid boolean, got {value}",
        f"containment.enabled: expected a valid boolean, got {value.strip(chr(34))!r}"
        if value.startswith('"')
        else f"containment.enabled: expected a valid boolean, got {value}",
    ]


def test_invalid_yaml_and_non_mapping_top_level() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("packages: [", env={})
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got a list"):
        parse_config("- a\n- b\n", env={})


def test_allow_rule_needs_reason_and_expiry() -> None:
    problems = errors_of(
        MINIMAL
        + """
policy:
  allow:
    - {package: left-pad, rule: "*", reason: "  "}
"""
    )
    assert problems == [
        "policy.allow[0].reason: expected a reason saying why this is allowed",
        "policy.allow[0].expires: required key missing",
    ]


def test_listen_address_is_validated() -> None:
    problems = errors_of(MINIMAL + "server: {listen: 'localhost'}\n")
    assert problems == ["server.listen: expected HOST:PORT such as 127.0.0.1:9464, got 'localhost'"]
    config = parse_config(MINIMAL + "server: {listen: '[::1]:9000'}\n", env={})
    assert (config.server.host, config.server.port) == ("::1", 9000)


def test_retry_max_must_not_be_below_initial() -> None:
    problems = errors_of(MINIMAL + "retry: {scan: {initial: 5m, max: 1m}}\n")
    assert problems == ["retry.scan.max: expected a delay at least as long as initial"]


# ------------------------------------------------------------------------------ expansion


def test_env_expansion_forms() -> None:
    env = {"SET": "value", "EMPTY": ""}
    data, problems = expand_env(
        {
            "a": "${SET}",
            "b": "${UNSET:-fallback}",
            "c": "${EMPTY:-fallback}",
            "d": "x-${SET}-y",
            "e": "$${SET}",
            "f": ["${EMPTY}"],
            "g": 5,
        },
        env,
    )
    assert problems == []
    assert data == {
        "a": "value",
        "b": "fallback",
        "c": "fallback",
        "d": "x-value-y",
        "e": "${SET}",
        "f": [""],
        "g": 5,
    }


def test_unset_variable_names_its_key_path_in_lists() -> None:
    _, problems = expand_env({"packages": [{"name": "ok"}, {"name": "${NAME}"}]}, {})
    assert problems == [
        "packages[1].name: environment variable NAME is not set "
        "(write ${NAME:-default} to give a default)"
    ]


def test_expanded_values_are_then_validated_as_their_type() -> None:
    config = parse_config(
        MINIMAL + "scan: {workers: '${WORKERS}'}\nregistries: {npm: {poll_interval: '${POLL}'}}\n",
        env={"WORKERS": "3", "POLL": "1500ms"},
    )
    assert config.scan.workers == 3
    assert config.registries.npm.poll_interval == 1.5


# ------------------------------------------------------------------------ durations, sizes


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1.5s", 1.5),
        (45, 45.0),
        ("45", 45.0),
        (0.25, 0.25),
        (timedelta(minutes=2), 120.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5s", "0s", "0", "5 parsecs", "1y", True, "s", None])
def test_invalid_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_duration_display_round_trips() -> None:
    for text in ("30s", "5m", "1h30m", "500ms", "1d"):
        assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256MiB", 256 * 1024**2),
        ("2GiB", 2 * 1024**3),
        ("10MB", 10_000_000),
        (512, 512),
        ("1kib", 1024),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_invalid_size_is_reported() -> None:
    problems = errors_of(MINIMAL + "scan: {limits: {max_total_bytes: lots}}\n")
    assert problems == [
        "scan.limits.max_total_bytes: expected a size like 256MiB or 10MB, got 'lots'"
    ]


# ------------------------------------------------------------------- what the service uses


def test_scan_settings_map_to_archive_limits_and_scan_options() -> None:
    config = parse_config(
        MINIMAL
        + """
policy: {internal_domains: [corp.example]}
scan:
  limits: {max_member_bytes: 1MiB, max_total_bytes: 8MiB, max_members: 10, max_ratio: 50,
           max_nesting: 1}
  size_anomaly: {growth_factor: 4, growth_floor: 1MiB}
""",
        env={},
    )
    limits = config.archive_limits()
    assert isinstance(limits, ArchiveLimits)
    assert (limits.max_member_bytes, limits.max_total_bytes) == (1024**2, 8 * 1024**2)
    assert (limits.max_members, limits.max_ratio, limits.max_nesting) == (10, 50.0, 1)
    assert limits.ratio_floor_bytes == ArchiveLimits().ratio_floor_bytes  # untouched default
    options = config.scan_options()
    assert isinstance(options, ScanOptions)
    assert options.internal_domains == ("corp.example",)
    assert options.size_growth_factor == 4.0 and options.size_growth_floor_bytes == 1024**2


def test_defaults_match_the_scanner_defaults() -> None:
    config = parse_config(MINIMAL, env={})
    assert config.archive_limits() == ArchiveLimits()
    assert config.scan_options() == ScanOptions()


def test_retry_policy_backoff_and_giving_up() -> None:
    config = parse_config(MINIMAL, env={})
    scan = config.retry.scan
    assert [scan.delay(n, rand=0.5) for n in (1, 2, 3)] == [10.0, 20.0, 40.0]
    assert scan.delay(50, rand=0.5) == scan.max  # capped
    low, high = scan.delay(1, rand=0.0), scan.delay(1, rand=0.999999)
    assert low == pytest.approx(8.0) and high == pytest.approx(12.0, rel=1e-4)
    assert not scan.exhausted(5, age_s=1e9) and scan.exhausted(6, age_s=0)
    outbox = config.retry.outbox
    assert not outbox.exhausted(1000, age_s=600)  # a ten-minute outage loses nothing
    assert outbox.exhausted(1, age_s=86400)


def test_config_is_immutable() -> None:
    config = parse_config(MINIMAL, env={})
    with pytest.raises(ValueError, match="frozen"):
        config.store.path = Path("/elsewhere")  # type: ignore[misc]


# ----------------------------------------------------------------------------------- secrets


def test_secrets_never_show_in_repr_str_dump_or_plan(secrets: dict[str, str]) -> None:
    config = load_config(REPO / "config" / "watcher.production.yaml", env=secrets)
    plan = describe_plan(config)
    shown = [repr(config), str(config), config.model_dump_json(), plan]
    for value in (
        secrets["PD_ROUTING_KEY"],
        secrets["SLACK_WEBHOOK_URL"],
        secrets["WEBHOOK_SECRET"],
        "T0/B0/",  # any part of the Slack URL path
    ):
        for text in shown:
            assert value not in text
    assert "routing_key ****" in plan and "secret ****" in plan


def test_invalid_secret_values_are_not_echoed_in_errors() -> None:
    bad_secret = fake_secret("whsec_", "not", "-base64!")
    problems = errors_of(
        """
packages: [{ecosystem: npm, name: a, owner: demo}]
owners:
  demo:
    webhook: {url: "https://hooks.example/x", secret: "${S}"}
    slack: {webhook_url: "${U}"}
    pagerduty: {routing_key: 12345}
""",
        env={"S": bad_secret, "U": fake_secret("http://", "plain.example/", "token123")},
    )
    text = "\n".join(problems)
    assert "not-base64" not in text and "token123" not in text and "12345" not in text
    assert "owners.demo.webhook.secret: expected base64 after 'whsec_' (value hidden)" in problems
    assert "owners.demo.pagerduty.routing_key: expected a valid string, got <hidden>" in problems


def test_credentials_in_registry_urls_are_masked_in_the_plan() -> None:
    config = parse_config(
        MINIMAL + "registries: {npm: {url: 'https://${U}:${P}@mirror.corp.example/npm/'}}\n",
        env={"U": "builder", "P": fake_secret("hunter", "2pass")},
    )
    plan = describe_plan(config)
    assert "hunter2pass" not in plan and "builder" not in plan
    assert "https://****@mirror.corp.example/npm/" in plan


# ------------------------------------------------------------------------------- the plan


def test_plan_says_what_is_watched_how_and_who_is_paged(secrets: dict[str, str]) -> None:
    config = load_config(REPO / "config" / "watcher.production.yaml", env=secrets)
    plan = describe_plan(config, today=date(2026, 6, 1))
    assert "npm  @acme/*" in plan and "(pattern)" in plan
    assert "follow changes feed http://127.0.0.1:5984/registry/_changes" in plan
    assert "pypi: the machine's pip setting; poll each package every 1m" in plan
    assert "pagerduty (Events API v2, default endpoint, routing_key ****)" in plan
    assert "webhook (POST https://hooks.acme.example/registry-watcher" in plan
    assert "policy: page at high and above" in plan
    assert "until 2027-01-01 (active)" in plan
    expired = describe_plan(config, today=date(2027, 1, 1))
    assert "until 2027-01-01 (EXPIRED, not applied)" in expired


def test_allow_rule_matching_and_expiry() -> None:
    config = parse_config(
        MINIMAL
        + """
policy:
  allow:
    - {package: "@acme/*", rule: "sourcemap-*", path: "package/dist/*.map", reason: r, expires: 2027-01-01}
""",
        env={},
    )
    rule = config.policy.allow[0]
    assert rule.matches("@acme/cli", "sourcemap-embedded-sources", "package/dist/cli.js.map")
    assert not rule.matches("@acme/cli", "secret-aws", "package/dist/cli.js.map")
    assert not rule.matches("@other/cli", "sourcemap-embedded-sources", "package/dist/a.map")
    assert rule.active_on(date(2026, 12, 31)) and not rule.active_on(date(2027, 1, 1))


def test_config_can_be_built_in_code() -> None:
    config = Config.model_validate(
        {
            "packages": [{"ecosystem": "pypi", "name": "six", "owner": "o"}],
            "owners": {"o": {"console": True}},
        }
    )
    assert config.packages_for(Ecosystem.PYPI)[0].name == "six"


def test_empty_packages_and_owners_are_errors() -> None:
    problems = errors_of("packages: []\nowners: {}\n")
    assert problems == ["packages: expected at least 1 entry", "owners: expected at least 1 entry"]


def test_an_invalid_only_entry_is_reported_once() -> None:
    problems = errors_of(
        "packages: [{ecosystem: gems, name: a, owner: demo}]\nowners: {demo: {console: true}}\n"
    )
    assert problems == ["packages[0].ecosystem: expected 'npm' or 'pypi', got 'gems'"]
