"""`install-hook`: code that runs on the user's machine at install time — npm lifecycle scripts and
`binding.gyp`, `.pth` files in wheels (run at every interpreter start), `setup.py` that reaches the
network or spawns processes. Expected for some packages; suspicious when it appears in a release
that did not have it (a stolen token's favourite trick), so new ones rank higher."""

from __future__ import annotations

import re
from collections.abc import Iterable

from watcher.model import Category, Finding, Member, MemberKind, Severity
from watcher.scanning.checks.base import Check, ScanContext, TextDoc

_NPM_INSTALL_SCRIPTS = (
    "preinstall",
    "install",
    "postinstall",
    "preuninstall",
    "uninstall",
    "postuninstall",
)
_SETUP_PY_CALLS = re.compile(
    r"\b(urllib\.request|urlopen|requests\.(get|post)|http\.client|socket\.socket|subprocess\.|"
    r"os\.system|os\.popen|os\.exec\w*|pty\.spawn|exec\(|eval\(|base64\.b64decode|__import__\()"
)
_PTH_CODE = re.compile(r"(?m)^\s*import[\s;]")
# `exec(open("pkg/version.py").read(), ns)`, `exec(fp.read(), ns)`: the packaging guide's idiom
# for reading `__version__` from a local file. Not a call out of the build.
_EXEC_LOCAL_FILE = re.compile(r"\bexec\(\s*(?:open\([^()]*(?:\([^()]*\)[^()]*)*\)|\w+)\.read\(\)")


def _depth(path: str) -> int:
    return path.count("/")


class InstallHookCheck(Check):
    category = Category.INSTALL_HOOK

    def member(self, member: Member, ctx: ScanContext) -> Iterable[Finding]:
        if member.kind is not MemberKind.FILE:
            return
        path = member.path
        leaf = path.rsplit("/", 1)[-1]
        if _depth(path) == 1 and leaf in ctx.install_hook_files:
            if leaf == "package.json" and ctx.package_json is not None:
                yield from self._npm_scripts(path, ctx)
            elif leaf == "binding.gyp":
                yield self.finding(
                    "npm-native-build",
                    Severity.MEDIUM,
                    path,
                    "binding.gyp: npm runs `node-gyp rebuild` at install",
                    severity_if_new=Severity.HIGH,
                )
        if path.endswith(".pth") and member.data is not None and _is_site_root(path):
            text = member.data.decode("utf-8", "replace")
            executes = bool(_PTH_CODE.search(text))
            yield self.finding(
                "python-pth-code" if executes else "python-pth-file",
                Severity.MEDIUM if executes else Severity.LOW,
                path,
                ".pth file with `import` lines: runs code at every Python start"
                if executes
                else ".pth file adds import paths at every Python start",
                key=text.strip()[:200] if executes else "",
                severity_if_new=Severity.HIGH if executes else None,
            )

    def _npm_scripts(self, path: str, ctx: ScanContext) -> Iterable[Finding]:
        assert ctx.package_json is not None
        scripts = ctx.package_json.get("scripts")
        if not isinstance(scripts, dict):
            return
        for name in _NPM_INSTALL_SCRIPTS:
            command = scripts.get(name)
            if not isinstance(command, str) or not command.strip():
                continue
            yield self.finding(
                "npm-install-script",
                Severity.MEDIUM,
                path,
                f"`{name}` script runs at install: {command[:200]}",
                key=f"{name}: {command}",
                evidence={"script": name, "command": command[:500]},
                severity_if_new=Severity.HIGH,
            )

    def text(self, doc: TextDoc, ctx: ScanContext) -> Iterable[Finding]:
        if (
            doc.embedded_source is not None
            or not doc.path.endswith("/setup.py")
            or _depth(doc.path) != 1
        ):
            return
        text = _EXEC_LOCAL_FILE.sub("", doc.text)
        calls = sorted({match.group(1) for match in _SETUP_PY_CALLS.finditer(text)})
        if calls:
            yield self.finding(
                "setup-py-side-effects",
                Severity.MEDIUM,
                doc.path,
                f"setup.py makes network or process calls at build/install: {', '.join(calls)}",
                key=",".join(calls),
                evidence={"calls": calls},
                severity_if_new=Severity.HIGH,
            )


def setup_py_side_effects(text: str) -> list[str]:
    """The lines of a setup.py that make network or process calls (the version-file idiom
    aside), stripped: what `install-hook-changed` compares between releases."""
    text = _EXEC_LOCAL_FILE.sub("", text)
    return [line.strip() for line in text.splitlines() if _SETUP_PY_CALLS.search(line)]


def _is_site_root(path: str) -> bool:
    """A wheel's .pth only runs from the site-packages root (or a .data/purelib|platlib root)."""
    parts = path.split("/")
    if len(parts) == 1:
        return True
    return len(parts) == 3 and parts[0].endswith(".data") and parts[1] in ("purelib", "platlib")
