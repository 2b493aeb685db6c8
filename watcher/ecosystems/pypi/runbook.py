"""PyPI's runbook steps: on Warehouse, delete the release on its management page (yanking is not
containment) and check its JSON page; on another index (devpi, pypiserver, Artifactory), delete
the way it allows and check its Simple API; MANIFEST.in and package-data excludes for next time."""

from __future__ import annotations

import re
from collections.abc import Mapping

from watcher.ecosystems.pypi.artifacts import package_relative
from watcher.ecosystems.runbook import RunbookInputs, ci_gate, code_secret_note, leaked_paths
from watcher.model import RunbookStep

WEB_PLACEHOLDER = "<pypi-web>"


def web_base(inputs: RunbookInputs) -> str:
    """The index's web base, derived from the configured Simple API URL (`…/simple/` off)."""
    if not inputs.registry_url:
        return WEB_PLACEHOLDER
    base = inputs.registry_url.rstrip("/")
    return re.sub(r"/(\+?simple|legacy)$", "", base)


def links(inputs: RunbookInputs) -> Mapping[str, str]:
    """The `{pypi}` field of the PyPI-token route's link: this index's web base."""
    return {"pypi": web_base(inputs)}


def _project(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def stolen_token_steps(inputs: RunbookInputs, why: str) -> list[RunbookStep]:
    if inputs.index_warehouse is False:  # no management pages there: no links to them
        return [
            RunbookStep(
                f"Treat the publishing token as stolen: {why}. Revoke the upload "
                "credentials this index accepts for the project (its users' passwords or "
                "tokens) and review who may upload; then contain the release below."
            )
        ]
    web = web_base(inputs)
    project = _project(inputs.name)
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


def steps(inputs: RunbookInputs) -> list[RunbookStep]:
    if inputs.index_warehouse is False and inputs.registry_url:
        return _other_index_steps(inputs, inputs.registry_url)
    return _warehouse_steps(inputs)


def _other_index_steps(inputs: RunbookInputs, index: str) -> list[RunbookStep]:
    """An index that is not Warehouse: delete the way it allows; check its Simple API."""
    project = _project(inputs.name)
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
        _prevent(inputs),
        _CI_GATE,
    ]


def _warehouse_steps(inputs: RunbookInputs) -> list[RunbookStep]:
    web = web_base(inputs)
    project = _project(inputs.name)
    release_page = f"{web}/manage/project/{project}/release/{inputs.version}/"
    no_index = (
        " (set registries.pypi.url so this link names your index)" if web == WEB_PLACEHOLDER else ""
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
        _prevent(inputs),
        _CI_GATE,
    ]


def _prevent(inputs: RunbookInputs) -> RunbookStep:
    paths = [package_relative(p) for p in leaked_paths(inputs)]
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
        f"archives' contents.{code_secret_note(inputs)}",
        command,
    )


_CI_GATE = ci_gate(
    'python -m build && for f in dist/*; do watcher scan "$f" --fail-on high || exit 1; '
    "done && twine upload dist/*"
)
