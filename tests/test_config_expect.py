"""`expect:` on owners and packages: validation, the key-by-key override, the resolved
`Expectations`, the graces, and the plan with the auth header masked."""

from __future__ import annotations

import pytest

from watcher.config import describe_plan, parse_config
from watcher.errors import ConfigError
from watcher.intent.model import Expectations, ProvenanceExpectation, TagExpectation
from watcher.model import Ecosystem

CONFIG = """
server: {api_tokens: [{name: ci, token: "${CI_TOKEN}"}]}
owners:
  platform:
    console: true
    expect:
      approval: true
      publishers: [acme-release-bot]
      provenance: {repository: "https://github.com/acme/sdk", workflow: ".github/workflows/rel.yml"}
      tag: {repository: "https://git.acme.example/sdk.git"}
  other: {console: true}
packages:
  - {ecosystem: npm, name: "@acme/inherits", owner: platform}
  - ecosystem: npm
    name: "@acme/own-tag"
    owner: platform
    expect:
      tag: {repository: "file:///srv/git/own.git", pattern: "release-{version}", auth_header: "${H}"}
  - ecosystem: npm
    name: "@acme/by-hand"
    owner: platform
    expect: {approval: false, provenance: null, tag: null}
  - {ecosystem: pypi, name: Acme_Tool, owner: other, expect: {approval: true}}
  - {ecosystem: npm, name: left-pad, owner: other}
"""


def header_value() -> str:
    return "Bearer " + "".join(("tok", "en-", "x" * 12))


def ci_token() -> str:
    return "".join(("ci-", "t" * 16))


def errors_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="test.yaml", env={})
    return str(info.value)


def test_a_package_inherits_its_owners_expectations() -> None:
    config = parse_config(
        CONFIG, source="t.yaml", env={"H": header_value(), "CI_TOKEN": ci_token()}
    )
    assert config.expectations(Ecosystem.NPM, "@acme/inherits") == Expectations(
        approval=True,
        tag=TagExpectation("https://git.acme.example/sdk.git", "v{version}"),
        publishers=("acme-release-bot",),
        provenance=ProvenanceExpectation(
            "https://github.com/acme/sdk", ".github/workflows/rel.yml"
        ),
    )


def test_package_keys_override_the_owners_key_by_key() -> None:
    config = parse_config(
        CONFIG, source="t.yaml", env={"H": header_value(), "CI_TOKEN": ci_token()}
    )
    own = config.expectations(Ecosystem.NPM, "@acme/own-tag")
    assert own.tag == TagExpectation("file:///srv/git/own.git", "release-{version}", header_value())
    assert own.tag.tag_for("1.2.3") == "release-1.2.3"
    assert own.approval and own.publishers == ("acme-release-bot",)  # the owner's, untouched
    by_hand = config.expectations(Ecosystem.NPM, "@acme/by-hand")
    assert by_hand == Expectations(publishers=("acme-release-bot",))  # null removes the owner's


def test_packages_without_expect_anywhere_expect_nothing() -> None:
    config = parse_config(CONFIG, source="t.yaml", env={"H": "", "CI_TOKEN": ci_token()})
    assert config.expectations(Ecosystem.NPM, "left-pad").empty
    assert config.expectations(Ecosystem.NPM, "not-watched").empty
    assert config.expectations(Ecosystem.PYPI, "acme-tool").approval  # PyPI names normalised
    assert config.expectations(Ecosystem.NPM, "@acme/own-tag").tag.auth_header is None  # empty


def test_graces_default_and_parse() -> None:
    config = parse_config(CONFIG, source="t.yaml", env={"H": "", "CI_TOKEN": ci_token()})
    assert (config.policy.approval_grace, config.policy.tag_grace) == (120.0, 600.0)
    shorter = parse_config(
        CONFIG + "policy: {approval_grace: 5s, tag_grace: 1m}\n",
        source="t.yaml",
        env={"H": "", "CI_TOKEN": ci_token()},
    )
    assert (shorter.policy.approval_grace, shorter.policy.tag_grace) == (5.0, 60.0)


def test_the_plan_shows_expectations_with_the_auth_header_masked() -> None:
    config = parse_config(
        CONFIG, source="t.yaml", env={"H": header_value(), "CI_TOKEN": ci_token()}
    )
    plan = describe_plan(config)
    assert header_value() not in plan and "x" * 12 not in plan
    assert "tag release-{version} in file:///srv/git/own.git, auth header ****" in plan
    assert "an approval from the gate for every artifact" in plan
    assert "approvals awaited 2m, tags 10m after first sight" in plan


@pytest.mark.parametrize(
    ("expect", "problem"),
    [
        ("{approval: 'yes'}", "approval"),
        ("{tag: {pattern: 'v{version}'}}", "tag.repository"),
        ("{tag: {repository: r, pattern: v1}}", "one '{version}'"),
        ("{tag: {repository: r, pattern: 'v{version}{x}'}}", "one '{version}'"),
        ("{tag: {repository: r, pattern: 'v {version}'}}", "valid git tag name"),
        ("{tag: {repository: 'https://u:p@git.example/r.git'}}", "no password in the URL"),
        ("{tag: {repository: '--upload-pack=x'}}", "git repository URL"),
        ("{publishers: []}", "publishers"),
        ("{provenance: {}}", "a repository, a workflow or both"),
        ("{approve: true}", "approve"),
    ],
)
def test_bad_expect_is_reported_with_its_key_path(expect: str, problem: str) -> None:
    text = f"""
owners: {{o: {{console: true}}}}
packages:
  - {{ecosystem: npm, name: x, owner: o, expect: {expect}}}
"""
    message = errors_of(text)
    assert "packages[0].expect" in message and problem in message
    assert ":p@" not in message


def test_expecting_approvals_without_api_tokens_is_an_error() -> None:
    text = """
owners: {o: {console: true, expect: {approval: true}}}
packages:
  - {ecosystem: npm, name: x, owner: o}
"""
    message = errors_of(text)
    assert "owners.o.expect.approval: approvals are expected but server.api_tokens is empty" in (
        message
    )
