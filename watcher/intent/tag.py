"""`expect.tag`: does the release's tag exist in the owner's git repository?

Read with git's own protocol (`git ls-remote --tags`), so any URL git accepts works (https, ssh,
file) and git's own transport handles smart HTTP, redirects and proxies. A private repository's
`Authorization` header goes to git through its environment (`GIT_CONFIG_COUNT` /
`GIT_CONFIG_KEY_0` / `GIT_CONFIG_VALUE_0` = `http.extraHeader`), never on its command line (where
`ps` shows it to every user); git never prompts (`GIT_TERMINAL_PROMPT=0`, no askpass) and is killed
after a timeout. Nothing here logs the header, and error messages carry git's last stderr line
with any credentials in URLs masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass

from watcher.errors import RegistryError
from watcher.intent.model import Expectations, TagExpectation
from watcher.model import Finding, Severity, origin_finding
from watcher.store.api import OriginCheckStore
from watcher.store.types import OriginCheck, StoredRelease

RELEASE_UNTAGGED = "release-untagged"
CHECK_KIND = "tag"  # the origin check's kind (`origin_checks.kind`)
DEFAULT_TIMEOUT_S = 30.0
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class TagLookupError(RegistryError):
    """git could not read the repository's tags (unreachable, refused, timed out)."""


@dataclass(frozen=True, slots=True)
class TagLookup:
    tag: str
    found: bool
    commit: str | None = None  # what the tag points at (the peeled commit of an annotated tag)


def git_environment(auth_header: str | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment git runs with: never prompting, no inherited `GIT_CONFIG_*` entries, and
    the auth header (when given) as the one `http.extraHeader` config entry."""
    env = {
        key: value
        for key, value in (os.environ if base is None else base).items()
        if not key.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))
        and key not in ("GIT_CONFIG_COUNT", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_CONFIG_PARAMETERS")
    }
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GCM_INTERACTIVE"] = "never"
    # ssh: fail rather than ask for a password or a host key confirmation
    env.setdefault("GIT_SSH_COMMAND", "ssh -oBatchMode=yes")
    if auth_header:
        env["GIT_CONFIG_COUNT"] = "1"
        env["GIT_CONFIG_KEY_0"] = "http.extraHeader"
        env["GIT_CONFIG_VALUE_0"] = f"Authorization: {auth_header}"
    return env


def masked(text: str) -> str:
    """`https://user:secret@host/…` → `https://…@host/…`."""
    return _USERINFO.sub("…@", text)


async def lookup_tag(
    expectation: TagExpectation,
    version: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    git: str | None = None,
) -> TagLookup:
    """Whether `expectation.tag_for(version)` is a tag of the repository. Raises TagLookupError
    when git cannot answer (that says nothing about the tag)."""
    tag = expectation.tag_for(version)
    program = git or shutil.which("git")
    if program is None:
        raise TagLookupError("git is not installed: expect.tag needs it on PATH")
    ref = f"refs/tags/{tag}"
    try:
        process = await asyncio.create_subprocess_exec(
            program,
            "ls-remote",
            "--tags",
            "--",
            expectation.repository,
            ref,
            ref + "^{}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=git_environment(expectation.auth_header),
            start_new_session=True,  # its helpers (git-remote-https, ssh) die with it
        )
    except OSError as exc:
        raise TagLookupError(f"cannot run git: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        _kill_group(process.pid)
        await process.wait()
        raise TagLookupError(
            f"git ls-remote {masked(expectation.repository)} timed out after {timeout_s:g}s"
        ) from None
    if process.returncode != 0:
        lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
        last = masked(lines[-1].strip())[:300] if lines else f"exit status {process.returncode}"
        raise TagLookupError(f"git ls-remote {masked(expectation.repository)}: {last}")
    commit: str | None = None
    found = False
    for line in out.decode("utf-8", "replace").splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:
            found, commit = True, commit or sha
        elif name == ref + "^{}":
            found, commit = True, sha  # the commit an annotated tag points at
    return TagLookup(tag, found, commit)


def _kill_group(pid: int) -> None:
    """git and the transport helpers it started (they hold its output pipes open)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def untagged_finding(expectation: TagExpectation, version: str, waited_s: float) -> Finding:
    """`release-untagged`: the release's tag is not in the repository after the grace period."""
    tag = expectation.tag_for(version)
    repository = masked(expectation.repository)
    return origin_finding(
        RELEASE_UNTAGGED,
        Severity.HIGH,
        f"no tag {tag} in {repository} {_duration(waited_s)} after the release was seen: "
        "a release nobody tagged was published around the pipeline (a stolen token or a "
        "publish by hand)",
        key=tag,
        evidence={"tag": tag, "repository": repository, "waited_s": round(waited_s)},
    )


async def schedule_tag_check(
    store: OriginCheckStore,
    expectations: Expectations,
    stored: StoredRelease,
    grace_s: float,
    *,
    now: float | None = None,
) -> OriginCheck | None:
    """At scan time: with `expect.tag`, the tag check is due `policy.tag_grace` after the release
    was first seen (at once when that is past). None for a baseline or without the expectation.
    Scheduling again (a rescan) keeps a pending check's due time and never re-arms a judged one
    (the tag does not depend on the files)."""
    if stored.baseline or expectations.tag is None:
        return None
    at = time.time() if now is None else now
    judged = [c for c in await store.origin_checks(stored.id) if c.kind == CHECK_KIND]
    if any(c.finished_at is not None for c in judged):
        return None
    tag = expectations.tag
    params = {"tag": tag.tag_for(stored.release.version), "repository": masked(tag.repository)}
    due = max(stored.created_at + grace_s, at)
    return await store.schedule_origin_check(stored.id, CHECK_KIND, due, params, now=at)


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"
