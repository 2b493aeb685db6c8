"""Incident → ordered containment steps with the exact commands for this release.

The first step is the one action for the first five minutes: an exposed credential is revoked first
(a secret that reached a public registry is compromised whatever happens to the package), then the
release is taken down the way its registry allows: those steps are the incident's ecosystem unit's
(`watcher/ecosystems/<name>/runbook.py`), as are its wording for a stolen publishing token and the
registry named on its commands. The service holds no publish credentials: these are commands a
person with 2FA runs. Registry addresses come from configuration, never from here.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from types import MappingProxyType

import structlog

from watcher import ecosystems
from watcher.config.schema import Config
from watcher.ecosystems.runbook import RunbookInputs, list_paths
from watcher.intent.approvals import RULE as UNAPPROVED_RULE
from watcher.model import Category, Ecosystem, Finding, Incident, RunbookStep, Severity

log = structlog.get_logger(__name__)

SECRETS_RULES = Path(__file__).parent.parent / "scanning" / "checks" / "secrets.toml"
SENSITIVE_RULES = SECRETS_RULES.with_name("sensitive.toml")


# -- credential routes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """How one credential type is revoked: by its provider's own route."""

    what: str  # "npm token"
    text: str  # a sentence saying how
    command: str | None = None
    url: str | None = None
    # where the registry/provider revokes this type on its own once published (ecosystem or "*"),
    # and the sentence that says so
    auto_revoked_in: tuple[str, ...] = ()
    auto_note: str = ""


_ROUTES: dict[str, Route] = {
    "npm": Route(
        "npm token",
        "List your tokens and revoke it (or on your account's Access Tokens page).",
        "npm token list\nnpm token revoke <token-id>",
        auto_revoked_in=("npm",),
        auto_note="npm revokes npm tokens it finds in published packages on its own: confirm it "
        "was revoked (`npm token list`).",
    ),
    "pypi": Route(
        "PyPI API token",
        "Remove it under API tokens on your PyPI account page (re-authentication required); "
        "prefer Trusted Publishing for the replacement.",
        url="{pypi}/manage/account/",
    ),
    "github": Route(
        "GitHub token",
        "Its owner deletes it under Settings → Developer settings → tokens; anyone holding it can "
        "revoke it through GitHub's credential-revocation API (unauthenticated, irreversible).",
        "curl -X POST https://api.github.com/credentials/revoke "
        '-d \'{"credentials":["<the token>"]}\'',
    ),
    "aws": Route(
        "AWS access key",
        "Deactivate it now (immediate, reversible), then delete it and review CloudTrail.",
        "aws iam update-access-key --access-key-id <access-key-id> --status Inactive "
        "--user-name <user>\naws iam delete-access-key --access-key-id <access-key-id> "
        "--user-name <user>",
    ),
    "gcp": Route(
        "Google Cloud service-account key",
        "Disable, then delete the key, and review the audit logs.",
        "gcloud iam service-accounts keys disable <key-id> --iam-account=<service-account-email>\n"
        "gcloud iam service-accounts keys delete <key-id> --iam-account=<service-account-email>",
    ),
    "slack-webhook": Route(
        "Slack incoming-webhook URL",
        "Remove the webhook in the Slack app's Incoming Webhooks settings.",
        auto_revoked_in=("*",),
        auto_note="Slack searches out leaked secrets and revokes them: confirm it was revoked.",
    ),
    "slack": Route(
        "Slack token",
        "Revoke it with auth.revoke (or in the app's OAuth & Permissions page).",
        "curl -X POST https://slack.com/api/auth.revoke -H 'Authorization: Bearer <the token>'",
        auto_revoked_in=("*",),
        auto_note="Slack searches out leaked secrets and revokes them: confirm it was revoked.",
    ),
    "stripe": Route(
        "Stripe key",
        "Dashboard → Developers → API keys → Roll key, with expiry now; then audit its use.",
    ),
    "openai": Route("OpenAI API key", "Revoke it on the organization's API keys page."),
    "anthropic": Route("Anthropic API key", "Disable it in the Console under Settings → API keys."),
    "ssh": Route(
        "SSH private key",
        "Remove its public key everywhere it is authorized (authorized_keys, GitHub user and "
        "deploy keys), then generate a new pair.",
        "gh ssh-key list\ngh ssh-key delete <key-id>",
    ),
    "private-key": Route(
        "private key",
        "Replace the key pair wherever its public half is trusted (servers, deploy keys) and "
        "revoke every certificate issued for it with reason keyCompromise.",
        "gh ssh-key list   # remove its public half where it is trusted\n"
        "certbot revoke --cert-path <cert.pem> --reason keycompromise",
    ),
    "webhook-secret": Route(
        "webhook signing secret",
        "Rotate it: sign with old and new secrets for a short overlap, then drop the old one.",
    ),
    "git": Route("git host credentials", "Revoke the token or password of every host listed."),
    "kubernetes": Route(
        "Kubernetes credentials",
        "Revoke the client certificate or token it holds (rotate the service-account token, "
        "re-issue user certificates) and review the cluster's audit log.",
    ),
    "cloud": Route(
        "cloud credentials",
        "Revoke every key and token it holds at its provider (AWS IAM keys, gcloud/azure logins, "
        "registry logins in docker config), then review their audit logs.",
    ),
    "terraform": Route(
        "secrets in Terraform state",
        "Rotate every secret the state holds (database passwords, keys, tokens): the state "
        "stores them in clear text.",
    ),
    "generic": Route(
        "credentials",
        "Rotate every credential in it at the service that issued it, and load it from the "
        "environment or a secret store instead.",
    ),
}


@dataclass(frozen=True, slots=True)
class RevokeHint:
    """A secret rule's own `revoke` sentence (checks/secrets.toml)."""

    description: str
    text: str


@dataclass(frozen=True, slots=True)
class RuleRunbook:
    """What the runbook takes from one scanner rule (checks/secrets.toml, checks/sensitive.toml):
    its revoke sentence and the name of its revocation route in `_ROUTES` (None: the rule named
    none; a secret is then rotated the generic way, a sensitive file holds no credential)."""

    hint: RevokeHint | None
    route: str | None


def load_secret_rule_runbooks(path: Path = SECRETS_RULES) -> dict[str, RuleRunbook]:
    """Per-rule runbook data from a rules file, keyed by rule id. A missing or unreadable file
    gives none; a rule naming an unknown route is a ValueError naming the rule, so a typo in the
    data fails its test instead of paging "generic"."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.debug("revoke_hints_unavailable", path=str(path), error=type(exc).__name__)
        return {}
    rules: dict[str, RuleRunbook] = {}
    for rule in [*data.get("rules", []), *data.get("rule", [])]:
        if not isinstance(rule, dict) or not isinstance(rule.get("id"), str):
            continue
        rule_id, text, route = rule["id"], rule.get("revoke"), rule.get("route")
        if route is not None and route not in _ROUTES:
            known = ", ".join(sorted(_ROUTES))
            raise ValueError(f"rule {rule_id}: unknown route {route!r} (routes: {known})")
        hint = None
        if isinstance(text, str) and text.strip():
            hint = RevokeHint(str(rule.get("description") or rule_id), text.strip())
        rules[rule_id] = RuleRunbook(hint, route)
    return rules


@cache
def _shipped_rules() -> Mapping[str, RuleRunbook]:
    """The shipped rule files, read once per process (they do not change while we run)."""
    return MappingProxyType(
        {**load_secret_rule_runbooks(SENSITIVE_RULES), **load_secret_rule_runbooks()}
    )


def load_revoke_hints(path: Path | None = None) -> dict[str, RevokeHint]:
    """`revoke` sentences from the secret rules file (the shipped ones by default), keyed by rule
    id."""
    rules = _shipped_rules() if path is None else load_secret_rule_runbooks(path)
    return {rule_id: rule.hint for rule_id, rule in rules.items() if rule.hint is not None}


def route_for(finding: Finding) -> Route:
    """The rule's own route (its `route` field); a rule without one is rotated the generic way."""
    rule = _shipped_rules().get(finding.rule)
    return _ROUTES[rule.route if rule is not None and rule.route else "generic"]


def _names_a_route(finding: Finding) -> bool:
    rule = _shipped_rules().get(finding.rule)
    return rule is not None and rule.route is not None


def is_credential(finding: Finding) -> bool:
    """An exposed credential: a secret-pattern match, or a sensitive file that holds credentials
    (whether it still works is watcher.verify's to say)."""
    if finding.category is Category.SECRET:
        return True
    if finding.category is not Category.SENSITIVE_FILE or not _names_a_route(finding):
        return False
    return bool(finding.evidence.get("content_confirmed")) or finding.severity is Severity.CRITICAL


RegistryFor = Callable[[Ecosystem, str], str | None]


@dataclass(frozen=True, slots=True)
class RunbookWriter:
    """A release's runbook as the service writes it: on the registry that serves the package
    (`registry_for`: the connected registries' answer; None or no answer: unknown), with what its
    unit knows of that registry (its `registries.<name>` section), the steps `build_runbook`
    orders."""

    config: Config
    registry_for: RegistryFor | None = None

    def write(
        self,
        ecosystem: Ecosystem,
        name: str,
        version: str,
        findings: Sequence[Finding],
        *,
        published_at: datetime | None,
        previous_good: str | None,
        now: datetime,
    ) -> list[RunbookStep]:
        url = self.registry_for(ecosystem, name) if self.registry_for else None
        inputs = RunbookInputs(
            ecosystem=ecosystem,
            name=name,
            version=version,
            findings=findings,
            now=now,
            published_at=published_at,
            registry_url=url,
            previous_good=previous_good,
        )
        if url is not None:
            section = self.config.registries.for_ecosystem(ecosystem)
            inputs = ecosystems.get(ecosystem).runbook_inputs(inputs, section)
        return build_runbook(inputs)

    def of(self, incident: Incident, previous_good: str | None, now: datetime) -> list[RunbookStep]:
        """The runbook of a stored incident, as its findings now stand."""
        return self.write(
            incident.ecosystem,
            incident.name,
            incident.version,
            incident.findings,
            published_at=incident.published_at,
            previous_good=previous_good,
            now=now,
        )


def build_runbook(
    inputs: RunbookInputs, revoke_hints: Mapping[str, RevokeHint] | None = None
) -> list[RunbookStep]:
    """Ordered steps; `revoke_hints` defaults to the secret rules' own `revoke` sentences."""
    hints = load_revoke_hints() if revoke_hints is None else revoke_hints
    unit = ecosystems.get(inputs.ecosystem)
    steps = _stolen_token_steps(inputs) + _credential_steps(inputs, hints)
    steps += unit.runbook_steps(inputs)
    return unit.for_registry(steps, inputs)


# -- a release published around the pipeline ----------------------------------------------------


def _stolen_token_steps(inputs: RunbookInputs) -> list[RunbookStep]:
    """A release that lost its provenance or changed publisher: the publishing credential is
    presumed stolen, so it is revoked before anything else (whoever holds it can publish again)."""
    found = [f for f in inputs.findings if f.category is Category.PROVENANCE]
    if not found:
        return []
    ref = f"{inputs.name}@{inputs.version}"
    why = f"{ref} was not published the way its previous release was ({found[0].message})"
    # an artifact the team's gate never approved: published around the pipeline
    unapproved = [f for f in found if f.rule == UNAPPROVED_RULE]
    if not unapproved:
        return ecosystems.get(inputs.ecosystem).stolen_token_steps(inputs, why)
    why = f"{ref} was published without the gate's approval ({unapproved[0].message})"
    return [
        *ecosystems.get(inputs.ecosystem).stolen_token_steps(inputs, why),
        RunbookStep(
            "Check the sessions of every account that can publish the package: sign them out "
            "everywhere, change their passwords, and read their recent security events (logins, "
            "new tokens, 2FA changes) for the publish above; then contain the release below."
        ),
    ]


# -- credentials ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _CredentialGroup:
    paths: list[str]
    hint: RevokeHint | None = None
    verdicts: set[str] = field(default_factory=set)  # watcher.verify's, where it ran


def _credential_label(verdicts: set[str]) -> str:
    """ "Live" only when the provider said so (watcher.verify); a match alone proves exposure,
    not that the credential still works."""
    if "live" in verdicts:
        return "Live credential (verified)"
    if verdicts == {"revoked"}:
        return "Exposed credential (the provider says it no longer works)"
    return "Exposed credential (not verified)"


def _credential_steps(inputs: RunbookInputs, hints: Mapping[str, RevokeHint]) -> list[RunbookStep]:
    """One step per credential type: the rule's own sentence where it has one, the provider's
    exact command from the routes table, and "confirm it was revoked" where that applies."""
    links = ecosystems.get(inputs.ecosystem).runbook_links(inputs)
    groups: dict[Route, _CredentialGroup] = {}
    for finding in inputs.findings:
        if not is_credential(finding):
            continue
        group = groups.setdefault(route_for(finding), _CredentialGroup([]))
        if finding.path not in group.paths:
            group.paths.append(finding.path)
        verification = finding.evidence.get("verification")
        if isinstance(verification, dict):
            group.verdicts.add(str(verification.get("verdict")))
        if group.hint is None:
            group.hint = hints.get(finding.rule) or _evidence_hint(finding)
    steps = []
    for route, group in groups.items():
        how = group.hint.text if group.hint else route.text
        label = _credential_label(group.verdicts)
        text = (
            f"{label}: {route.what} in {list_paths(group.paths)}. {how} A secret that "
            "reached a public registry is compromised, whatever happens to the package."
        )
        if "*" in route.auto_revoked_in or inputs.ecosystem.value in route.auto_revoked_in:
            text += f" {route.auto_note}"
        url = _link(route.url, links) if route.url else None
        steps.append(RunbookStep(text=text, command=route.command, url=url))
    return steps


def rotation_reminder(
    findings: Sequence[Finding], hints: Mapping[str, RevokeHint] | None = None
) -> str | None:
    """What containment does not undo, for the resolved page: every credential the release
    carried, as its finding shows it (redacted), with its revocation route. None when it
    carried none."""
    hints = load_revoke_hints() if hints is None else hints
    lines: list[str] = []
    for finding in findings:
        if not is_credential(finding):
            continue
        route = route_for(finding)
        hint = hints.get(finding.rule) or _evidence_hint(finding)
        how = hint.text if hint else route.text
        where = route.command or (_link(route.url, {}) if route.url else None)
        line = f"- {finding.message} ({finding.path}): {how}"
        lines.append(f"{line} → {'; '.join(where.splitlines())}" if where else line)
    if not lines:
        return None
    head = (
        "Still to do: the release is gone, but what it exposed is not. Rotate every credential "
        "it carried:"
    )
    return "\n".join([head, *lines])


def _evidence_hint(finding: Finding) -> RevokeHint | None:
    """The secret check copies its rule's `revoke` sentence into the finding's evidence."""
    hint = finding.evidence.get("revoke")
    if not isinstance(hint, str) or not hint.strip():
        return None
    return RevokeHint(str(finding.evidence.get("rule_description") or finding.rule), hint.strip())


def _link(template: str, values: Mapping[str, str]) -> str:
    """A route's link with its `{field}`s filled from what the incident's registry knows (its unit's
    `runbook_links`); a field it does not know shows as `<field-web>`."""
    for key in re.findall(r"\{(\w+)\}", template):
        template = template.replace("{" + key + "}", values.get(key, f"<{key}-web>"))
    return template
