"""Incident → ordered containment steps with the exact commands for this release.

The npm and PyPI takedown steps below still branch on the ecosystem (`Ecosystem.NPM` /
`Ecosystem.PYPI`): they were reworked for private registries while the ecosystem units were being
cut out, and moving them into `watcher/ecosystems/<name>/` is the next step. A third ecosystem
gets no takedown steps here rather than PyPI's.

The first step is the one action for the first five minutes: an exposed credential is revoked first
(a secret that reached a public registry is compromised whatever happens to the package), then the
release is taken down the way its registry allows. The service holds no publish credentials: these
are commands a person with 2FA runs. Registry addresses come from configuration, never from here.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path, PurePosixPath
from types import MappingProxyType

import structlog

from watcher import ecosystems
from watcher.model import Category, Ecosystem, Finding, RunbookStep, Severity

log = structlog.get_logger(__name__)

NPM_UNPUBLISH_WINDOW = timedelta(hours=72)
NPM_DOWNLOADS_LIMIT = 300  # weekly downloads below which npm allows unpublishing after 72 h
OTP = "--otp=<code>"
GOOD_PLACEHOLDER = "<last-good-version>"
PYPI_WEB_PLACEHOLDER = "<pypi-web>"
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


# -- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunbookInputs:
    ecosystem: Ecosystem
    name: str
    version: str
    findings: Sequence[Finding]
    now: datetime
    published_at: datetime | None = None
    # the registry (npm) or index (PyPI Simple API) base URL from configuration; None = unknown
    registry_url: str | None = None
    # dist-tags that point at the bad version (npm), None when not known
    dist_tags: Sequence[str] | None = None
    previous_good: str | None = None
    # npm: False for a private registry (not npm's own default): every npm command names it with
    # --registry, and the public registry's policies and CDN mirrors are left out. None: unknown
    registry_public: bool | None = None
    # PyPI: False for an index that is not Warehouse (devpi, pypiserver, a mirror): no links to
    # management pages it lacks; its Simple API file list says whether the files are gone
    index_warehouse: bool | None = None


def build_runbook(
    inputs: RunbookInputs, revoke_hints: Mapping[str, RevokeHint] | None = None
) -> list[RunbookStep]:
    """Ordered steps; `revoke_hints` defaults to the secret rules' own `revoke` sentences."""
    hints = load_revoke_hints() if revoke_hints is None else revoke_hints
    steps = _stolen_token_steps(inputs) + _credential_steps(inputs, hints)
    if inputs.ecosystem == Ecosystem.NPM:
        steps += _npm_steps(inputs)
        if inputs.registry_public is False and inputs.registry_url:
            url = inputs.registry_url
            steps = [_with_registry(step, url) for step in steps]
    elif inputs.ecosystem == Ecosystem.PYPI:
        steps += _pypi_steps(inputs)
    else:  # any other registered ecosystem brings its own
        steps += ecosystems.get(inputs.ecosystem).runbook_steps(inputs)
    return steps


# -- a release published around the pipeline ----------------------------------------------------


def _stolen_token_steps(inputs: RunbookInputs) -> list[RunbookStep]:
    """A release that lost its provenance or changed publisher: the publishing credential is
    presumed stolen, so it is revoked before anything else (whoever holds it can publish again)."""
    found = [f for f in inputs.findings if f.category is Category.PROVENANCE]
    if not found:
        return []
    ref = f"{inputs.name}@{inputs.version}"
    why = f"{ref} was not published the way its previous release was ({found[0].message})"
    if inputs.ecosystem not in (Ecosystem.NPM, Ecosystem.PYPI):
        return ecosystems.get(inputs.ecosystem).stolen_token_steps(inputs, why)
    if inputs.ecosystem == Ecosystem.NPM:
        return [
            RunbookStep(
                f"Treat the publishing token as stolen: {why}. Revoke every npm token of the "
                "accounts that can publish the package (list them, revoke by id), check that "
                "each account has two-factor auth for writes, and that the package's owners "
                "are the people you expect; then contain the release below.",
                "npm token list\nnpm token revoke <token-id>\n"
                "npm profile get   # two-factor auth: auth-and-writes\n"
                f"npm owner ls {inputs.name}",
            )
        ]
    if inputs.index_warehouse is False:  # no management pages there: no links to them
        return [
            RunbookStep(
                f"Treat the publishing token as stolen: {why}. Revoke the upload "
                "credentials this index accepts for the project (its users' passwords or "
                "tokens) and review who may upload; then contain the release below."
            )
        ]
    web = _pypi_web(inputs)
    project = _pypi_project(inputs.name)
    return [
        RunbookStep(
            f"Treat the publishing token as stolen: {why}. Remove the project's API tokens "
            f"(account page {web}/manage/account/, re-authentication required), review its "
            "trusted publishers on the publishing settings page and its collaborators "
            f"({web}/manage/project/{project}/collaboration/); then contain the release below.",
            None,
            f"{web}/manage/project/{project}/settings/publishing/",
        )
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
            f"{label}: {route.what} in {_list_paths(group.paths)}. {how} A secret that "
            "reached a public registry is compromised, whatever happens to the package."
        )
        if "*" in route.auto_revoked_in or inputs.ecosystem.value in route.auto_revoked_in:
            text += f" {route.auto_note}"
        url = route.url.replace("{pypi}", _pypi_web(inputs)) if route.url else None
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
        where = route.command or (
            route.url.replace("{pypi}", PYPI_WEB_PLACEHOLDER) if route.url else None
        )
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


def _list_paths(paths: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(f"`{p}`" for p in paths[:limit])
    more = len(paths) - limit
    return f"{shown} and {more} more" if more > 0 else shown


# -- npm -----------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def _left(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _npm_steps(inputs: RunbookInputs) -> list[RunbookStep]:
    if inputs.registry_public is False and inputs.registry_url:
        return _npm_private_steps(inputs)
    return _npm_public_steps(inputs)


def _with_registry(step: RunbookStep, url: str) -> RunbookStep:
    """Every `npm …` line names the registry: without it npm would ask its default one."""
    if not step.command:
        return step
    lines = []
    for line in step.command.splitlines():
        named = line
        if line.startswith("npm ") and "--registry" not in line:
            command, sep, comment = line.partition("   #")
            named = f"{command.rstrip()} --registry {url}" + (f"   #{comment}" if sep else "")
        lines.append(named)
    return RunbookStep(step.text, "\n".join(lines), step.url)


def _npm_private_steps(inputs: RunbookInputs) -> list[RunbookStep]:
    """A private registry (Verdaccio, Artifactory, GitHub Packages...): its own unpublish rules,
    no public policy window, no public CDN mirrors."""
    ref = f"{inputs.name}@{inputs.version}"
    good = inputs.previous_good or GOOD_PLACEHOLDER
    steps = [
        RunbookStep(
            f"Unpublish {ref} now from {inputs.registry_url} (this registry's own rules apply: "
            "npm's public 72-hour policy does not). If it refuses, deprecate it and ask its "
            "administrators to remove the version.",
            f"npm unpublish {ref} {OTP}",
        )
    ]
    steps += _dist_tag_steps(inputs, good, unpublishing=True)
    steps.append(_npm_verify(inputs))
    steps.append(
        RunbookStep(
            f"Ship the fix as a new version (for example the next patch after {inputs.version})."
        )
    )
    steps.append(
        RunbookStep(
            "Copies you cannot recall: proxies and caches in front of this registry (uplinks, "
            "CI and build caches, developers' npm caches) keep the tarballs they fetched. Treat "
            "anything the release carried (embedded sources included) as disclosed."
        )
    )
    steps.append(_npm_prevent(inputs))
    steps.append(_ci_gate(inputs))
    return steps


def _npm_public_steps(inputs: RunbookInputs) -> list[RunbookStep]:
    ref = f"{inputs.name}@{inputs.version}"
    good = inputs.previous_good or GOOD_PLACEHOLDER
    unpublish = f"npm unpublish {ref} {OTP}"
    deprecate = (
        f'npm deprecate {ref} "Do not use: this version shipped files that were not meant to be '
        f'published; use {good} or later" {OTP}'
    )
    never_reused = f"{ref} can never be published again, even after unpublishing"
    steps: list[RunbookStep] = []
    window_open: bool | None = None
    if inputs.published_at is not None:
        deadline = _utc(inputs.published_at) + NPM_UNPUBLISH_WINDOW
        window_open = _utc(inputs.now) < deadline
    if window_open:
        assert inputs.published_at is not None
        deadline = _utc(inputs.published_at) + NPM_UNPUBLISH_WINDOW
        steps.append(
            RunbookStep(
                f"Unpublish {ref} now: npm's 72-hour window closes {_stamp(deadline)} "
                f"({_left(deadline - _utc(inputs.now))} left). Allowed while no other package in "
                f"the registry depends on {inputs.name}; irreversible, and {never_reused}. "
                "Add --otp (or approve the web prompt) where 2FA applies.",
                unpublish,
            )
        )
    else:
        when = (
            f"npm's 72-hour window closed {_stamp(_utc(inputs.published_at) + NPM_UNPUBLISH_WINDOW)}"
            if inputs.published_at is not None
            else "the publish time is unknown (check it with `npm view "
            f"{inputs.name} time --json`), so npm's 72-hour window may be closed"
        )
        steps.append(
            RunbookStep(
                f"Deprecate {ref} now ({when}): installs warn, but the files stay downloadable, "
                "so this is a mitigation, not containment.",
                deprecate,
            )
        )
    steps += _dist_tag_steps(inputs, good, unpublishing=bool(window_open))
    if not window_open:
        steps.append(
            RunbookStep(
                f"Unpublish {ref} if npm still allows it: after 72 hours only when no other "
                f"package depends on it, it had fewer than {NPM_DOWNLOADS_LIMIT} downloads last "
                "week, and it has a single owner (check with `npm owner ls`). This is the only "
                f"containment; otherwise ask npm support. {never_reused}.",
                f"npm owner ls {inputs.name}\n{unpublish}",
            )
        )
    steps.append(_npm_verify(inputs))
    steps.append(
        RunbookStep(
            f"Ship the fix as a new version (for example the next patch after {inputs.version}): "
            "version numbers cannot be reused."
        )
    )
    steps.append(_npm_copies(inputs))
    steps.append(_npm_prevent(inputs))
    steps.append(_ci_gate(inputs))
    return steps


def _dist_tag_steps(inputs: RunbookInputs, good: str, *, unpublishing: bool) -> list[RunbookStep]:
    why = (
        "unpublishing the version `latest` points at moves `latest` to the highest remaining "
        "version, possibly a pre-release"
        if unpublishing
        else "new installs must stop resolving to it"
    )
    if inputs.dist_tags is None:
        return [
            RunbookStep(
                f"Point `latest` (and any other dist-tag on {inputs.version}) back at {good}: "
                f"{why}. List the tags first.",
                f"npm dist-tag ls {inputs.name}\n"
                f"npm dist-tag add {inputs.name}@{good} latest {OTP}",
            )
        ]
    steps = []
    for tag in inputs.dist_tags:
        reason = why if tag == "latest" else f"it points at {inputs.version}"
        steps.append(
            RunbookStep(
                f"Point dist-tag `{tag}` at {good}: {reason}.",
                f"npm dist-tag add {inputs.name}@{good} {tag} {OTP}",
            )
        )
    return steps


def _npm_tarball_url(inputs: RunbookInputs) -> str | None:
    if not inputs.registry_url:
        return None
    base = PurePosixPath(inputs.name).name  # `@scope/pkg` → `pkg`
    return f"{inputs.registry_url.rstrip('/')}/{inputs.name}/-/{base}-{inputs.version}.tgz"


def _npm_verify(inputs: RunbookInputs) -> RunbookStep:
    command = f"npm view {inputs.name}@{inputs.version} version   # expect E404 once unpublished"
    tarball = _npm_tarball_url(inputs)
    if tarball:
        command += f"\ncurl -sI {tarball}   # expect 404"
    return RunbookStep(
        "Verify: the version is gone from the registry and its tarball no longer answers; "
        "deprecation and dist-tag moves do not count as containment.",
        command,
    )


# Findings whose file should simply not have shipped: excluding the path is the fix. (A secret in
# a file that belongs in the package is fixed in the source instead.)
_EXCLUDABLE = (
    Category.SOURCE_MAP,
    Category.SENSITIVE_FILE,
    Category.VCS_METADATA,
    Category.UNEXPECTED_CONTENT,
)


def _leaked_paths(inputs: RunbookInputs) -> list[str]:
    paths: list[str] = []
    for finding in inputs.findings:
        path = finding.path.strip()
        if finding.category in _EXCLUDABLE and path and path not in paths:
            paths.append(path)
    return paths


def _secrets_in_code(inputs: RunbookInputs) -> list[str]:
    return sorted(
        {f.path for f in inputs.findings if f.category is Category.SECRET and f.path}
        - set(_leaked_paths(inputs))
    )


def _package_relative(path: str, ecosystem: Ecosystem) -> str:
    """The path as the project sees it: npm's `package/` prefix or an sdist's top folder off."""
    parts = PurePosixPath(path).parts
    npm_prefix = ecosystem == Ecosystem.NPM and parts[:1] == ("package",)
    sdist_top = ecosystem == Ecosystem.PYPI and len(parts) > 1 and re.search(r"-\d", parts[0])
    if npm_prefix or sdist_top:
        parts = parts[1:]
    return "/".join(parts)


def _npm_copies(inputs: RunbookInputs) -> RunbookStep:
    ref = f"{inputs.name}@{inputs.version}"
    paths = [_package_relative(p, Ecosystem.NPM) for p in _leaked_paths(inputs)]
    command = None
    if paths:
        command = f"curl -sI https://cdn.jsdelivr.net/npm/{ref}/{paths[0]}   # 200: still served"
    return RunbookStep(
        "Copies you cannot recall: registry mirrors replicate within seconds; jsDelivr keeps "
        "exact versions permanently (its purge only refreshes aliases such as @latest): ask its "
        f"maintainers to block {ref}; unpkg removes versions on request. Treat anything the "
        "release carried (embedded sources included) as disclosed.",
        command,
        "https://github.com/jsdelivr/jsdelivr/issues/new",
    )


def _npm_prevent(inputs: RunbookInputs) -> RunbookStep:
    paths = [_package_relative(p, Ecosystem.NPM) for p in _leaked_paths(inputs)]
    lines = _ignore_lines(paths)
    command = None
    if lines:
        body = "\n".join(lines)
        command = f"cat >> .npmignore <<'EOF'\n{body}\nEOF\nnpm pack --dry-run"
    return RunbookStep(
        "Prevent recurrence: list what the package needs in package.json `files` (an allowlist "
        "beats .npmignore), or at least ignore these exact paths, then check with "
        f"`npm pack --dry-run`.{_code_secret_note(inputs)}",
        command,
    )


def _ignore_lines(paths: Iterable[str]) -> list[str]:
    lines: list[str] = []
    for path in paths:
        top = path.split("/", 1)[0]
        if top in (".git", ".svn", ".hg"):
            entry = f"/{top}/"
        elif path.endswith(".map"):
            entry = "*.map"
        else:
            entry = f"/{path}"
        if entry not in lines:
            lines.append(entry)
    return lines


def _ci_gate(inputs: RunbookInputs) -> RunbookStep:
    if inputs.ecosystem == Ecosystem.NPM:
        packed = inputs.name.lstrip("@").replace("/", "-")
        command = f"npm pack && watcher scan {packed}-<version>.tgz --fail-on high && npm publish"
    else:
        command = (
            'python -m build && for f in dist/*; do watcher scan "$f" --fail-on high || exit 1; '
            "done && twine upload dist/*"
        )
    return RunbookStep(
        "Gate every publish in CI on `watcher scan` of the exact artifact to be uploaded.", command
    )


# -- PyPI ----------------------------------------------------------------------------------------


def _pypi_web(inputs: RunbookInputs) -> str:
    """The index's web base, derived from the configured Simple API URL (`…/simple/` off)."""
    if not inputs.registry_url or inputs.ecosystem != Ecosystem.PYPI:
        return PYPI_WEB_PLACEHOLDER
    base = inputs.registry_url.rstrip("/")
    return re.sub(r"/(\+?simple|legacy)$", "", base)


def _pypi_project(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pypi_steps(inputs: RunbookInputs) -> list[RunbookStep]:
    if inputs.index_warehouse is False and inputs.registry_url:
        return _pypi_other_index_steps(inputs, inputs.registry_url)
    return _pypi_warehouse_steps(inputs)


def _pypi_other_index_steps(inputs: RunbookInputs, index: str) -> list[RunbookStep]:
    """An index that is not Warehouse: delete the way it allows; check its Simple API."""
    project = _pypi_project(inputs.name)
    page = f"{index.rstrip('/')}/{project}/"
    version = re.escape(inputs.version)
    return [
        RunbookStep(
            f"Delete release {inputs.version} of {inputs.name} (its files) from {index} the way "
            "this index allows: devpi `devpi remove <name>==<version>`, pypiserver: remove the "
            "files from its package directory, Artifactory / Nexus: delete the artifacts. A yank "
            "(PEP 592) is not containment: the files stay downloadable.",
            f"devpi remove {inputs.name}=={inputs.version}   # devpi; other indexes: see above",
        ),
        RunbookStep(
            "Verify with what the index serves: its Simple API page for the project must no "
            "longer list the release's files (the count is 0 once they are gone).",
            f"curl -s {page} | grep -cE '[-_]{version}(-|\\.tar|\\.zip|\\.whl)'   # 0 once deleted",
        ),
        RunbookStep(
            f"Ship the fix as a new version (for example {inputs.version}.post1 or the next patch)."
        ),
        RunbookStep(
            "Copies you cannot recall: mirrors and caches of this index (devpi replicas, "
            "Artifactory and Nexus caches, CI caches) keep the files they fetched. Treat "
            "anything the release carried as disclosed."
        ),
        _pypi_prevent(inputs),
        _ci_gate(inputs),
    ]


def _pypi_warehouse_steps(inputs: RunbookInputs) -> list[RunbookStep]:
    web = _pypi_web(inputs)
    project = _pypi_project(inputs.name)
    release_page = f"{web}/manage/project/{project}/release/{inputs.version}/"
    no_index = (
        " (set registries.pypi.url so this link names your index)"
        if web == PYPI_WEB_PLACEHOLDER
        else ""
    )
    return [
        RunbookStep(
            f"Delete release {inputs.version} of {inputs.name} (or its leaking files) on its "
            "release-management page: Options → Delete, type the version, re-authenticate. Owner "
            "role only; permanent; the filenames can never be uploaded again. There is no API "
            f"for this: use the web page{no_index}.",
            None,
            release_page,
        ),
        RunbookStep(
            "Yanking is not containment: a yanked release (PEP 592) is only skipped by resolvers "
            "and its files stay downloadable. Yank only if you cannot delete, and say so in the "
            "incident.",
            None,
            f"{web}/manage/project/{project}/releases/",
        ),
        RunbookStep(
            "Verify: the release's JSON page answers 404 once deleted, and the old file URLs "
            "no longer serve the files (deleted files may stay reachable for a while: check).",
            f"curl -s -o /dev/null -w '%{{http_code}}\\n' {web}/pypi/{project}/{inputs.version}/json"
            "   # expect 404",
        ),
        RunbookStep(
            f"Ship the fix as a new version (for example {inputs.version}.post1 or the next "
            "patch): deleted filenames cannot be reused."
        ),
        RunbookStep(
            "Copies you cannot recall: mirrors (bandersnatch, devpi, Artifactory and Nexus "
            "caches) keep the files they fetched after the release is deleted. Treat anything "
            "the release carried as disclosed."
        ),
        _pypi_prevent(inputs),
        _ci_gate(inputs),
    ]


def _pypi_prevent(inputs: RunbookInputs) -> RunbookStep:
    paths = [_package_relative(p, Ecosystem.PYPI) for p in _leaked_paths(inputs)]
    lines: list[str] = []
    for path in paths:
        top = path.split("/", 1)[0]
        line = f"prune {top}" if top in (".git", ".svn", ".hg") else f"exclude {path}"
        if line not in lines:
            lines.append(line)
    command = None
    if lines:
        command = "cat >> MANIFEST.in <<'EOF'\n" + "\n".join(lines) + "\nEOF"
    return RunbookStep(
        "Prevent recurrence: exclude these exact paths from the sdist (MANIFEST.in) and from "
        "the wheel (your build backend's package-data excludes), then rebuild and list the "
        f"archives' contents.{_code_secret_note(inputs)}",
        command,
    )


def _code_secret_note(inputs: RunbookInputs) -> str:
    paths = _secrets_in_code(inputs)
    if not paths:
        return ""
    return (
        f" Take the secret out of the source of {_list_paths(paths)} (load it at run time) "
        "before the next build."
    )
