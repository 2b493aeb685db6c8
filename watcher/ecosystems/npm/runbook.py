"""npm's runbook steps: unpublish within the 72-hour window (or deprecate), dist-tags back on the
last good version, the tarball checked gone, what mirrors keep, `files` for next time; on a
private registry, its own rules and every npm command naming it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import PurePosixPath

from watcher.ecosystems.npm.artifacts import package_relative
from watcher.ecosystems.runbook import RunbookInputs, ci_gate, code_secret_note, leaked_paths
from watcher.model import RunbookStep
from watcher.timefmt import hours_minutes, stamp, utc

NPM_UNPUBLISH_WINDOW = timedelta(hours=72)
NPM_DOWNLOADS_LIMIT = 300  # weekly downloads below which npm allows unpublishing after 72 h
OTP = "--otp=<code>"


def steps(inputs: RunbookInputs) -> list[RunbookStep]:
    if inputs.registry_public is False and inputs.registry_url:
        return _private_steps(inputs)
    return _public_steps(inputs)


def for_registry(steps: Sequence[RunbookStep], inputs: RunbookInputs) -> list[RunbookStep]:
    """On a private registry every `npm …` line names it: without it npm would ask its default."""
    if inputs.registry_public is False and inputs.registry_url:
        return [_with_registry(step, inputs.registry_url) for step in steps]
    return list(steps)


def stolen_token_steps(inputs: RunbookInputs, why: str) -> list[RunbookStep]:
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


def takedown_command(name: str, version: str) -> str:
    """What a person runs to take the release down (automatic containment never unpublishes)."""
    return f"npm unpublish {name}@{version}"


def _with_registry(step: RunbookStep, url: str) -> RunbookStep:
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


def _private_steps(inputs: RunbookInputs) -> list[RunbookStep]:
    """A private registry (Verdaccio, Artifactory, GitHub Packages...): its own unpublish rules,
    no public policy window, no public CDN mirrors."""
    ref = f"{inputs.name}@{inputs.version}"
    good = inputs.good
    steps = [
        RunbookStep(
            f"Unpublish {ref} now from {inputs.registry_url} (this registry's own rules apply: "
            "npm's public 72-hour policy does not). If it refuses, deprecate it and ask its "
            "administrators to remove the version.",
            f"npm unpublish {ref} {OTP}",
        )
    ]
    steps += _dist_tag_steps(inputs, good, unpublishing=True)
    steps.append(_verify(inputs))
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
    steps.append(_prevent(inputs))
    steps.append(_ci_gate(inputs))
    return steps


def _public_steps(inputs: RunbookInputs) -> list[RunbookStep]:
    ref = f"{inputs.name}@{inputs.version}"
    good = inputs.good
    unpublish = f"npm unpublish {ref} {OTP}"
    deprecate = (
        f'npm deprecate {ref} "Do not use: this version shipped files that were not meant to be '
        f'published; use {good} or later" {OTP}'
    )
    never_reused = f"{ref} can never be published again, even after unpublishing"
    steps: list[RunbookStep] = []
    window_open: bool | None = None
    if inputs.published_at is not None:
        deadline = utc(inputs.published_at) + NPM_UNPUBLISH_WINDOW
        window_open = utc(inputs.now) < deadline
    if window_open:
        assert inputs.published_at is not None
        deadline = utc(inputs.published_at) + NPM_UNPUBLISH_WINDOW
        steps.append(
            RunbookStep(
                f"Unpublish {ref} now: npm's 72-hour window closes {stamp(deadline)} "
                f"({hours_minutes(deadline - utc(inputs.now))} left). Allowed while no other package in "
                f"the registry depends on {inputs.name}; irreversible, and {never_reused}. "
                "Add --otp (or approve the web prompt) where 2FA applies.",
                unpublish,
            )
        )
    else:
        when = (
            f"npm's 72-hour window closed {stamp(utc(inputs.published_at) + NPM_UNPUBLISH_WINDOW)}"
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
    steps.append(_verify(inputs))
    steps.append(
        RunbookStep(
            f"Ship the fix as a new version (for example the next patch after {inputs.version}): "
            "version numbers cannot be reused."
        )
    )
    steps.append(_copies(inputs))
    steps.append(_prevent(inputs))
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


def _tarball_url(inputs: RunbookInputs) -> str | None:
    if not inputs.registry_url:
        return None
    base = PurePosixPath(inputs.name).name  # `@scope/pkg` → `pkg`
    return f"{inputs.registry_url.rstrip('/')}/{inputs.name}/-/{base}-{inputs.version}.tgz"


def _verify(inputs: RunbookInputs) -> RunbookStep:
    command = f"npm view {inputs.name}@{inputs.version} version   # expect E404 once unpublished"
    tarball = _tarball_url(inputs)
    if tarball:
        command += f"\ncurl -sI {tarball}   # expect 404"
    return RunbookStep(
        "Verify: the version is gone from the registry and its tarball no longer answers; "
        "deprecation and dist-tag moves do not count as containment.",
        command,
    )


def _copies(inputs: RunbookInputs) -> RunbookStep:
    ref = f"{inputs.name}@{inputs.version}"
    paths = [package_relative(p) for p in leaked_paths(inputs)]
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


def _prevent(inputs: RunbookInputs) -> RunbookStep:
    paths = [package_relative(p) for p in leaked_paths(inputs)]
    lines = _ignore_lines(paths)
    command = None
    if lines:
        body = "\n".join(lines)
        command = f"cat >> .npmignore <<'EOF'\n{body}\nEOF\nnpm pack --dry-run"
    return RunbookStep(
        "Prevent recurrence: list what the package needs in package.json `files` (an allowlist "
        "beats .npmignore), or at least ignore these exact paths, then check with "
        f"`npm pack --dry-run`.{code_secret_note(inputs)}",
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
    packed = inputs.name.lstrip("@").replace("/", "-")
    return ci_gate(f"npm pack && watcher scan {packed}-<version>.tgz --fail-on high && npm publish")
