"""`sensitive-file`: files that should never be published, by path and, where the path alone is
not enough, by content. The rules are data in `sensitive.toml`."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from watcher.model import Category, Finding, Member, MemberKind, Severity
from watcher.scanning.checks.base import Check, ScanContext
from watcher.scanning.checks.locations import location_evidence, location_of
from watcher.scanning.checks.recognise import recognise

_CONTENT_WINDOW = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SensitiveRule:
    id: str
    description: str
    severity: Severity
    content: re.Pattern[bytes] | None
    content_severity: Severity | None
    test_severity: Severity | None = None  # in the package's tests, fixtures or docs


@dataclass(frozen=True, slots=True)
class _RuleSet:
    rules: tuple[SensitiveRule, ...]
    by_name: re.Pattern[str]  # one alternation over base names: group r<i> is rule i
    by_path: re.Pattern[str]  # globs with a directory part, matched at the end of the path
    exclude: dict[int, re.Pattern[str]]


def _glob_body(glob: str) -> str:
    """fnmatch's regex for one glob, without its `(?s:…)\\Z` wrapper, to join into alternations."""
    translated = fnmatch.translate(glob)
    return translated.removeprefix("(?s:").removesuffix(r")\Z")


def _glob_group(index: int, globs: list[str]) -> str:
    return f"(?P<r{index}>{'|'.join(_glob_body(glob) for glob in globs)})"


@cache
def load_rules() -> _RuleSet:
    """The rule table, parsed once per process (read-only after that)."""
    raw = tomllib.loads(
        resources.files("watcher.scanning.checks").joinpath("sensitive.toml").read_text()
    )
    rules: list[SensitiveRule] = []
    name_groups: list[str] = []
    path_groups: list[str] = []
    exclude: dict[int, re.Pattern[str]] = {}
    for index, entry in enumerate(raw["rule"]):
        content = entry.get("content")
        rules.append(
            SensitiveRule(
                id=entry["id"],
                description=entry["description"],
                severity=Severity(entry["severity"]),
                content=re.compile(content.encode()) if content else None,
                content_severity=Severity(entry["content_severity"]) if content else None,
                test_severity=Severity(entry["test_severity"])
                if "test_severity" in entry
                else None,
            )
        )
        names = [glob for glob in entry["paths"] if "/" not in glob]
        dirs = [glob for glob in entry["paths"] if "/" in glob]
        if names:
            name_groups.append(_glob_group(index, names))
        if dirs:
            path_groups.append(_glob_group(index, ["*/" + glob for glob in dirs] + dirs))
        if entry.get("exclude"):
            exclude[index] = re.compile(
                "|".join(fnmatch.translate(glob) for glob in entry["exclude"]), re.IGNORECASE
            )
    return _RuleSet(
        rules=tuple(rules),
        by_name=re.compile("(?s:" + "|".join(name_groups) + r")\Z", re.IGNORECASE),
        by_path=re.compile("(?s:" + "|".join(path_groups) + r")\Z", re.IGNORECASE),
        exclude=exclude,
    )


def rule_by_id(rule_id: str | None) -> SensitiveRule | None:
    if rule_id is None:
        return None
    return next((rule for rule in load_rules().rules if rule.id == rule_id), None)


def match_rule(path: str) -> SensitiveRule | None:
    ruleset = load_rules()
    basename = path.rsplit("/", 1)[-1]
    for pattern, subject in ((ruleset.by_path, path), (ruleset.by_name, basename)):
        match = pattern.match(subject)
        if match and match.lastgroup:
            index = int(match.lastgroup[1:])
            excluded = ruleset.exclude.get(index)
            if excluded and excluded.match(basename):
                continue
            return ruleset.rules[index]
    return None


class SensitiveFileCheck(Check):
    category = Category.SENSITIVE_FILE

    def member(self, member: Member, ctx: ScanContext) -> Iterable[Finding]:
        if member.kind is not MemberKind.FILE:
            return
        by_name = match_rule(member.path)
        if by_name is not None:
            yield self._finding(member, by_name, by_content=False)
        if member.data is not None:
            # by what it holds, whatever its name (a kubeconfig called `config.bak`)
            by_content = rule_by_id(recognise(member.data))
            if by_content is not None and by_content is not by_name:
                yield self._finding(member, by_content, by_content=True)

    def _finding(self, member: Member, rule: SensitiveRule, *, by_content: bool) -> Finding:
        severity = rule.severity
        message = f"{rule.description} shipped" + (" (recognised by content)" if by_content else "")
        confirmed = False
        if (
            rule.content is not None
            and member.data is not None
            and rule.content.search(member.data[:_CONTENT_WINDOW])
        ):
            confirmed = True
            severity = rule.content_severity or severity
            message = f"{rule.description} shipped, and it holds credentials or data"
        evidence: dict[str, object] = {"size": member.size, "content_confirmed": confirmed}
        if by_content:
            evidence["recognised_by"] = "content"
        location = location_of(member.path)
        evidence.update(location_evidence(location))
        if location is not None and rule.test_severity is not None:
            # a fixture key, a sample database: seen, flagged, not paged
            severity = min(severity, rule.test_severity, key=lambda s: s.rank)
            message += f" (in the package's {location.value})"
        return self.finding(rule.id, severity, member.path, message, evidence=evidence)
