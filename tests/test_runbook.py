"""Runbooks per ecosystem and finding type, computed for a fixed `now`."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.incidents.runbook import (
    RevokeHint,
    RunbookInputs,
    build_runbook,
    load_revoke_hints,
    load_secret_rule_runbooks,
    rotation_reminder,
    route_for,
)
from watcher.model import Category, Ecosystem, Finding, Severity
from watcher.scanning.checks.secrets import RULES_FILE

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
NPM_REGISTRY = "http://127.0.0.1:4873/"
PYPI_INDEX = "http://127.0.0.1:3141/simple/"


def f(
    rule: str,
    category: Category,
    path: str,
    severity: Severity = Severity.CRITICAL,
    **evidence: object,
) -> Finding:
    return Finding(rule, category, severity, path, f"{rule} at {path}", evidence=dict(evidence))


SOURCEMAP = f("sourcemap-embedded-sources", Category.SOURCE_MAP, "package/dist/cli.js.map")
NPMRC = f("npmrc-file", Category.SENSITIVE_FILE, "package/.npmrc", content_confirmed=True)
NPMRC_EMPTY = f(
    "npmrc-file",
    Category.SENSITIVE_FILE,
    "package/.npmrc",
    Severity.MEDIUM,
    content_confirmed=False,
)
GIT_DIR = f("vcs-git-directory", Category.VCS_METADATA, "package/.git/config", Severity.HIGH)


def npm(
    findings: list[Finding], published_ago: timedelta | None = timedelta(hours=5), **kw: object
) -> list:  # type: ignore[type-arg]
    public = kw.pop("public", None)
    inputs = RunbookInputs(
        Ecosystem.NPM,
        kw.pop("name", "@acme/cli"),  # type: ignore[arg-type]
        "2.1.88",
        findings,
        NOW,
        None if published_ago is None else NOW - published_ago,
        NPM_REGISTRY,
        kw.pop("dist_tags", ["latest"]),  # type: ignore[arg-type]
        kw.pop("previous_good", "2.1.87"),  # type: ignore[arg-type]
        registry_public=public,  # type: ignore[arg-type]
    )
    return build_runbook(inputs, revoke_hints=kw.pop("hints", {}))  # type: ignore[arg-type]


def pypi(
    findings: list[Finding], index: str | None = PYPI_INDEX, warehouse: bool | None = None
) -> list:  # type: ignore[type-arg]
    inputs = RunbookInputs(
        Ecosystem.PYPI,
        "Acme_SDK",
        "1.4.0",
        findings,
        NOW,
        NOW - timedelta(days=3),
        index,
        index_warehouse=warehouse,
    )
    return build_runbook(inputs, revoke_hints={})


# -- npm -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("findings", "published_ago", "first_command", "first_text"),
    [
        # inside the 72 h window, no credential: unpublish first, with the window's end and time left
        (
            [SOURCEMAP],
            timedelta(hours=5),
            "npm unpublish @acme/cli@2.1.88 --otp=<code>",
            "Unpublish @acme/cli@2.1.88 now: npm's 72-hour window closes 2026-04-03 07:00 UTC (67h00m left).",
        ),
        (
            [GIT_DIR],
            timedelta(hours=71, minutes=30),
            "npm unpublish @acme/cli@2.1.88 --otp=<code>",
            "Unpublish @acme/cli@2.1.88 now: npm's 72-hour window closes 2026-03-31 12:30 UTC (0h30m left).",
        ),
        # outside it: deprecate is the first action
        (
            [SOURCEMAP],
            timedelta(hours=73),
            'npm deprecate @acme/cli@2.1.88 "Do not use',
            "Deprecate @acme/cli@2.1.88 now (npm's 72-hour window closed 2026-03-31 11:00 UTC)",
        ),
        # unknown publish time: cannot promise the window
        (
            [SOURCEMAP],
            None,
            'npm deprecate @acme/cli@2.1.88 "Do not use',
            "Deprecate @acme/cli@2.1.88 now (the publish time is unknown",
        ),
        # a live credential always comes first
        (
            [SOURCEMAP, NPMRC],
            timedelta(hours=5),
            "npm token list\nnpm token revoke <token-id>",
            "Exposed credential (not verified): npm token in `package/.npmrc`.",
        ),
        # an .npmrc without a token is not a credential
        (
            [NPMRC_EMPTY],
            timedelta(hours=5),
            "npm unpublish @acme/cli@2.1.88 --otp=<code>",
            "Unpublish",
        ),
    ],
)
def test_npm_first_step(
    findings: list[Finding], published_ago: timedelta | None, first_command: str, first_text: str
) -> None:
    steps = npm(findings, published_ago)
    assert steps[0].command.startswith(first_command)
    assert steps[0].text.startswith(first_text)


def test_npm_inside_window_order_and_dist_tags() -> None:
    steps = npm([SOURCEMAP], dist_tags=["latest", "next"])
    commands = [s.command for s in steps]
    assert commands[:3] == [
        "npm unpublish @acme/cli@2.1.88 --otp=<code>",
        "npm dist-tag add @acme/cli@2.1.87 latest --otp=<code>",
        "npm dist-tag add @acme/cli@2.1.87 next --otp=<code>",
    ]
    assert "possibly a pre-release" in steps[1].text
    assert "can never be published again" in steps[0].text
    assert "no other package in the registry depends on" in steps[0].text


def test_npm_outside_window_lists_npm_conditions_and_still_offers_unpublish() -> None:
    steps = npm([SOURCEMAP], timedelta(days=10))
    assert steps[1].command == "npm dist-tag add @acme/cli@2.1.87 latest --otp=<code>"
    [conditional] = [
        s for s in steps if s.text.startswith("Unpublish @acme/cli@2.1.88 if npm still allows it")
    ]
    assert "fewer than 300 downloads last week" in conditional.text
    assert "single owner" in conditional.text
    assert (
        conditional.command == "npm owner ls @acme/cli\nnpm unpublish @acme/cli@2.1.88 --otp=<code>"
    )
    assert "not containment" in steps[0].text


def test_unknown_dist_tags_and_good_version_are_placeholders() -> None:
    steps = npm([SOURCEMAP], dist_tags=None, previous_good=None)
    assert steps[1].command == (
        "npm dist-tag ls @acme/cli\nnpm dist-tag add @acme/cli@<last-good-version> latest --otp=<code>"
    )


def test_npm_verification_uses_the_configured_registry() -> None:
    [verify] = [s for s in npm([SOURCEMAP]) if s.text.startswith("Verify")]
    assert "curl -sI http://127.0.0.1:4873/@acme/cli/-/cli-2.1.88.tgz" in verify.command
    [plain] = [s for s in npm([SOURCEMAP], name="left-pad") if s.text.startswith("Verify")]
    assert "http://127.0.0.1:4873/left-pad/-/left-pad-2.1.88.tgz" in plain.command


@pytest.mark.parametrize("published_ago", [timedelta(hours=5), timedelta(days=10), None])
def test_a_private_registry_is_named_on_every_npm_command_and_has_no_public_steps(
    published_ago: timedelta | None,
) -> None:
    steps = npm([SOURCEMAP, NPMRC], published_ago, public=False)
    commands = [line for s in steps if s.command for line in s.command.splitlines()]
    npm_lines = [line for line in commands if line.startswith("npm ") or "&& npm " in line]
    assert npm_lines and all(f"--registry {NPM_REGISTRY}" in line for line in npm_lines), npm_lines
    text = " ".join(f"{s.text} {s.command or ''} {s.url or ''}" for s in steps)
    for public_only in ("jsdelivr", "unpkg", "window closes", "npm support", "downloads last week"):
        assert public_only not in text, public_only
    assert steps[1].text.startswith("Unpublish @acme/cli@2.1.88 now from"), "after the credential"


def test_the_public_registry_keeps_its_policy_and_mirror_steps() -> None:
    for public in (True, None):
        steps = npm([SOURCEMAP], public=public)
        text = " ".join(f"{s.text} {s.command or ''}" for s in steps)
        assert "jsdelivr" in text and "72-hour window" in text and "--registry" not in text


def test_npm_copies_and_recurrence() -> None:
    steps = npm([SOURCEMAP, NPMRC, GIT_DIR])
    [copies] = [s for s in steps if s.text.startswith("Copies you cannot recall")]
    assert "jsDelivr" in copies.text and "unpkg" in copies.text and "disclosed" in copies.text
    assert copies.command.startswith(
        "curl -sI https://cdn.jsdelivr.net/npm/@acme/cli@2.1.88/dist/cli.js.map"
    )
    [prevent] = [s for s in steps if s.text.startswith("Prevent recurrence")]
    assert "`files`" in prevent.text
    assert (
        prevent.command
        == "cat >> .npmignore <<'EOF'\n*.map\n/.npmrc\n/.git/\nEOF\nnpm pack --dry-run"
    )
    [gate] = [s for s in steps if "watcher scan" in (s.command or "")]
    assert (
        gate.command
        == "npm pack && watcher scan acme-cli-<version>.tgz --fail-on high && npm publish"
    )
    assert any("new version" in s.text and "cannot be reused" in s.text for s in steps)


def test_secret_in_code_is_fixed_in_source_not_excluded() -> None:
    code = f("github-token", Category.SECRET, "package/lib/config.js")
    steps = npm([code])
    [prevent] = [s for s in steps if s.text.startswith("Prevent recurrence")]
    assert prevent.command is None
    assert "Take the secret out of the source of `package/lib/config.js`" in prevent.text


# -- credentials ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finding", "what", "command_part", "confirm"),
    [
        (
            f("npm-access-token", Category.SECRET, "package/index.js"),
            "npm token",
            "npm token revoke",
            True,
        ),
        (
            f("aws-access-key-id", Category.SECRET, "package/a.js"),
            "AWS access key",
            "aws iam update-access-key",
            False,
        ),
        (
            f("github-token", Category.SECRET, "package/a.js"),
            "GitHub token",
            "credentials/revoke",
            False,
        ),
        (
            f("gcp-service-account-key", Category.SECRET, "package/k.json"),
            "Google Cloud service-account key",
            "gcloud iam service-accounts keys disable",
            False,
        ),
        (
            f("slack-webhook-url", Category.SECRET, "package/a.js"),
            "Slack incoming-webhook URL",
            None,
            True,
        ),
        (f("slack-token", Category.SECRET, "package/a.js"), "Slack token", "auth.revoke", True),
        (
            f("private-key", Category.SECRET, "package/key.pem"),
            "private key",
            "certbot revoke",
            False,
        ),
        (
            f("private-key-file", Category.SENSITIVE_FILE, "package/id_rsa"),
            "SSH private key",
            "gh ssh-key delete",
            False,
        ),
        (
            f("terraform-state", Category.SENSITIVE_FILE, "package/terraform.tfstate"),
            "secrets in Terraform state",
            None,
            False,
        ),
        (f("twilio-auth-token", Category.SECRET, "package/a.js"), "credentials", None, False),
    ],
)
def test_credential_routes(
    finding: Finding, what: str, command_part: str | None, confirm: bool
) -> None:
    step = npm([finding])[0]
    assert step.text.startswith(f"Exposed credential (not verified): {what} in `{finding.path}`.")
    assert "compromised, whatever happens to the package" in step.text
    assert (command_part in step.command) if command_part else step.command is None
    assert ("confirm it was revoked" in step.text) is confirm


@pytest.mark.parametrize(
    ("verdicts", "label"),
    [
        ((), "Exposed credential (not verified)"),
        (("unverified",), "Exposed credential (not verified)"),
        (("revoked",), "Exposed credential (the provider says it no longer works)"),
        (("revoked", "live"), "Live credential (verified)"),
    ],
)
def test_a_credential_is_called_live_only_when_verified(
    verdicts: tuple[str, ...], label: str
) -> None:
    findings = [
        f("aws-access-key-id", Category.SECRET, f"package/k{n}.js", verification={"verdict": v})
        for n, v in enumerate(verdicts)
    ] or [f("aws-access-key-id", Category.SECRET, "package/k.js")]
    step = npm(findings)[0]
    assert step.text.startswith(f"{label}: AWS access key in ")
    assert ("Live" in step.text) is ("live" in verdicts)


def test_the_rotation_reminder_lists_each_credential_with_its_route() -> None:
    findings = [
        f("aws-access-key-id", Category.SECRET, "package/a.js"),
        NPMRC,
        SOURCEMAP,
    ]
    reminder = rotation_reminder(findings)
    assert reminder is not None
    head, *lines = reminder.splitlines()
    assert "Rotate every credential it carried" in head
    assert [line.split(" (", 1)[0] for line in lines] == [
        "- aws-access-key-id at package/a.js",
        "- npmrc-file at package/.npmrc",
    ], "credentials only, each as its finding shows it"
    assert "npm token revoke" in lines[1]
    assert rotation_reminder([SOURCEMAP, GIT_DIR]) is None


def test_npm_token_auto_revocation_is_an_npm_fact_only() -> None:
    token = f("npm-access-token", Category.SECRET, "pkg-1.4.0/setup.py")
    assert "confirm it was revoked" not in pypi([token])[0].text


def test_pypi_token_route_links_to_the_configured_index() -> None:
    token = f(
        "pypirc-file", Category.SENSITIVE_FILE, "acme_sdk-1.4.0/.pypirc", content_confirmed=True
    )
    step = pypi([token])[0]
    assert step.url == "http://127.0.0.1:3141/manage/account/"


def test_rule_hints_from_the_secret_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "secrets.toml"
    rules.write_text(
        '[[rules]]\nid = "npm-access-token"\ndescription = "npm access token"\n'
        'revoke = "Revoke it with npm token revoke and audit recent publishes."\n'
        '[[rules]]\nid = "no-hint"\ndescription = "x"\n'
    )
    hints = load_revoke_hints(rules)
    assert hints == {
        "npm-access-token": RevokeHint(
            "npm access token", "Revoke it with npm token revoke and audit recent publishes."
        )
    }
    step = npm([f("npm-access-token", Category.SECRET, "package/a.js")], hints=hints)[0]
    assert "Revoke it with npm token revoke and audit recent publishes." in step.text
    assert step.command == "npm token list\nnpm token revoke <token-id>"
    assert load_revoke_hints(tmp_path / "missing.toml") == {}


def test_the_shipped_secret_rules_each_get_a_hint() -> None:
    hints = load_revoke_hints()
    assert hints, "checks/secrets.toml carries a revoke sentence per rule"
    for rule_id, hint in hints.items():
        step = npm([f(rule_id, Category.SECRET, "package/a.js")], hints=hints)[0]
        assert hint.text in step.text


def test_a_secret_rule_names_its_revocation_route_as_data(tmp_path: Path) -> None:
    rules = tmp_path / "secrets.toml"
    rules.write_text(
        '[[rules]]\nid = "acme-deploy-key"\ndescription = "x"\nroute = "github"\n'
        '[[rules]]\nid = "no-route"\ndescription = "y"\n'
    )
    data = load_secret_rule_runbooks(rules)
    assert data["acme-deploy-key"].route == "github"
    assert data["no-route"].route is None  # rotated the generic way
    # the route comes from the rule, not from a word of its id
    assert route_for(f("twilio-auth-token", Category.SECRET, "package/a.js")).what == "credentials"
    assert route_for(f("github-token", Category.SECRET, "package/a.js")).what == "GitHub token"
    assert route_for(f("secret-github-x", Category.SECRET, "package/a.js")).what == "credentials"


def test_an_unknown_route_in_the_rules_file_names_the_rule(tmp_path: Path) -> None:
    rules = tmp_path / "secrets.toml"
    rules.write_text('[[rules]]\nid = "acme-key"\ndescription = "x"\nroute = "githbu"\n')
    with pytest.raises(ValueError, match="rule acme-key: unknown route 'githbu'"):
        load_secret_rule_runbooks(rules)


def test_every_shipped_secret_rule_names_a_route() -> None:
    shipped = tomllib.loads(RULES_FILE.read_text(encoding="utf-8"))["rules"]
    assert shipped and all("route" in rule for rule in shipped), "secrets.toml: route per rule"
    assert set(load_secret_rule_runbooks()) == {rule["id"] for rule in shipped}


def test_a_sensitive_file_rule_names_its_route_in_its_own_data() -> None:
    sensitive = tomllib.loads(RULES_FILE.with_name("sensitive.toml").read_text(encoding="utf-8"))
    routed = {rule["id"]: rule["route"] for rule in sensitive["rule"] if "route" in rule}
    assert routed["npmrc-file"] == "npm" and routed["kubeconfig"] == "kubernetes"
    assert "ssh-config" not in routed, "a file that holds no credential names no route"
    npmrc = route_for(f("npmrc-file", Category.SENSITIVE_FILE, "package/.npmrc"))
    assert npmrc.command == "npm token list\nnpm token revoke <token-id>"
    ssh_config = f("ssh-config", Category.SENSITIVE_FILE, "package/.ssh/config")
    assert not npm([ssh_config])[0].text.startswith("Exposed credential")
    npmrc_file = f("npmrc-file", Category.SENSITIVE_FILE, "package/.npmrc", content_confirmed=True)
    assert npm([npmrc_file])[0].text.startswith("Exposed credential")


def test_one_step_per_credential_type_listing_every_path() -> None:
    findings = [f("aws-access-key-id", Category.SECRET, f"package/f{i}.js") for i in range(7)]
    steps = npm(findings)
    assert steps[0].text.startswith(
        "Exposed credential (not verified): AWS access key in `package/f0.js`, "
    )
    assert "and 2 more" in steps[0].text
    assert not steps[1].text.startswith("Exposed credential")


# -- PyPI ----------------------------------------------------------------------------------------


def test_an_index_that_is_not_warehouse_gets_no_manage_links_and_a_real_check() -> None:
    provenance = f("provenance-publisher-changed", Category.PROVENANCE, "-", message="x")
    steps = pypi([SOURCEMAP, provenance], warehouse=False)
    text = " ".join(f"{s.text} {s.command or ''} {s.url or ''}" for s in steps)
    assert "/manage/" not in text and "expect 404" not in text and "/json" not in text
    (verify,) = [s for s in steps if s.text.startswith("Verify")]
    assert verify.command is not None
    assert verify.command.startswith(f"curl -s {PYPI_INDEX}acme-sdk/ | grep -cE ")
    assert r"[-_]1\.4\.0(-|\.tar|\.zip|\.whl)" in verify.command


def test_pypi_delete_is_the_containment_and_yank_is_not() -> None:
    steps = pypi([f("dotenv-file", Category.SENSITIVE_FILE, "acme_sdk-1.4.0/.env", Severity.HIGH)])
    delete, yank, verify = steps[0], steps[1], steps[2]
    assert delete.url == "http://127.0.0.1:3141/manage/project/acme-sdk/release/1.4.0/"
    assert delete.command is None
    for words in ("Owner role only", "permanent", "can never be uploaded again", "no API"):
        assert words in delete.text
    assert yank.text.startswith("Yanking is not containment")
    assert yank.url == "http://127.0.0.1:3141/manage/project/acme-sdk/releases/"
    assert "http://127.0.0.1:3141/pypi/acme-sdk/1.4.0/json" in verify.command


def test_pypi_without_a_configured_index_says_so() -> None:
    steps = pypi([SOURCEMAP], index=None)
    assert steps[0].url == "<pypi-web>/manage/project/acme-sdk/release/1.4.0/"
    assert "set registries.pypi.url" in steps[0].text


def test_pypi_recurrence_names_exact_paths() -> None:
    steps = pypi(
        [
            f("dotenv-file", Category.SENSITIVE_FILE, "acme_sdk-1.4.0/.env", Severity.HIGH),
            f(
                "vcs-git-directory",
                Category.VCS_METADATA,
                "acme_sdk-1.4.0/.git/HEAD",
                Severity.HIGH,
            ),
            f("sourcemap-embedded-sources", Category.SOURCE_MAP, "acme_sdk/static/app.js.map"),
        ]
    )
    [prevent] = [s for s in steps if s.text.startswith("Prevent recurrence")]
    assert prevent.command == (
        "cat >> MANIFEST.in <<'EOF'\nexclude .env\nprune .git\nexclude acme_sdk/static/app.js.map\nEOF"
    )
    assert any("for f in dist/*; do watcher scan" in (s.command or "") for s in steps)


@pytest.mark.parametrize(
    "steps",
    [npm([SOURCEMAP, NPMRC]), npm([SOURCEMAP], timedelta(days=9)), pypi([SOURCEMAP])],
)
def test_every_url_is_configured_or_a_provider_route(steps: list) -> None:  # type: ignore[type-arg]
    allowed = (
        "http://127.0.0.1:4873/",
        "http://127.0.0.1:3141/",
        "https://github.com/jsdelivr/",
        "https://cdn.jsdelivr.net/",
        "https://api.github.com/",
        "https://slack.com/",
    )
    for step in steps:
        for url in re.findall(
            r"https?://[^\s'\"`]+", f"{step.text} {step.command or ''} {step.url or ''}"
        ):
            assert url.startswith(allowed), url
