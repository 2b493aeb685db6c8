"""`secret`: credentials in text members and in source maps' embedded sources.

Rules are data (`secrets.toml` beside this module), gitleaks-style. Scanning is built for 100 MB
minified bundles and never runs a rule's regex over the whole text:

1. one pass of a compiled multi-literal engine finds every occurrence of every keyword
   (`watcher.scanning.needles`: hyperscan, about ten times faster than the stdlib regex fallback);
2. an anchored rule's regex is tried only at its hits (`Pattern.match`); any other rule's regex
   searches merged windows around its hits;
3. a match must pass the rule's validator (checksums), entropy floor and allowlists and the
   placeholder filter; where two rules match the same text, the one listed first wins.

A secret's value never leaves this module: findings carry `watcher.redact.redact` of it.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import itertools
import math
import re
import tomllib
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from watcher.model import Category, Credential, Finding, Severity
from watcher.redact import redact
from watcher.scanning.checks.base import Check, ScanContext, TextDoc
from watcher.scanning.checks.locations import (
    in_test_dir,
    is_production_config,
    location_evidence,
    location_of,
)
from watcher.scanning.checks.secrets_decode import PREFIXES, decoded_texts
from watcher.scanning.checks.secrets_gates import rule_gate
from watcher.scanning.needles import Gate, Hits, NeedleIndex, find_all

RULES_FILE = Path(__file__).with_name("secrets.toml")

# Rules whose match carries a checksum or a fixed, distinctive prefix: the only ones run over the
# printable strings of binaries, where anything keyed on a word (`password`) fires on noise.
BINARY_RULE_IDS = frozenset(
    [
        "aws-access-key-id",
        "npm-access-token",
        "pypi-api-token",
        "github-token",
        "github-fine-grained-pat",
        "gitlab-token",
        "slack-token",
        "slack-webhook-url",
        "stripe-live-secret-key",
        "sendgrid-api-key",
        "anthropic-api-key",
        "google-api-key",
        "private-key",
    ]
)

# Past this many matches of one rule in one document the rest are counted, not reported: a generated
# file full of tokens is one problem, not thousands of pages.
_MAX_MATCHES_PER_RULE = 50
_DEFAULT_AFTER = 256
_LONG_VALUE = 256
_LONG_VALUE_WORD = 7
# `allow_key` patterns see this many characters before the match, then the match up to the secret:
# the whole key name even when the keyword is its last word (`NextToken`).
_KEY_WINDOW = 40
# how far from a secret the other half of its credential (an AWS key id) is looked for
_COMPANION_REACH = 400


# -- validators ----------------------------------------------------------------------------------

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62_crc32(data: str) -> str:
    """CRC32 of `data`, base62-encoded and left-padded to 6 characters: the checksum GitHub and npm
    append to their tokens."""
    value = zlib.crc32(data.encode("ascii"))
    digits = ""
    while value:
        value, rem = divmod(value, 62)
        digits = _BASE62[rem] + digits
    return digits.rjust(6, "0")


def _prefixed_crc32(token: str) -> bool:
    """`<prefix>_<30 random chars><6-char checksum of them>`."""
    _, sep, body = token.partition("_")
    if not sep or len(body) != 36 or not body.isascii():
        return False
    return base62_crc32(body[:30]) == body[30:]


def _pypi_macaroon(token: str) -> bool:
    """A PyPI token is `pypi-` + a base64url macaroon (v2 binary): version byte 2, an optional
    location field (type 1) and an identifier field (type 2)."""
    payload = token.removeprefix("pypi-")[:400]
    payload = payload[: len(payload) - len(payload) % 4]
    try:
        raw = base64.urlsafe_b64decode(payload)
    except (binascii.Error, ValueError):
        return False
    if len(raw) < 4 or raw[0] != 2:
        return False
    pos = 1
    fields: dict[int, bytes] = {}
    for _ in range(2):
        field_type, pos = _varint(raw, pos)
        length, pos = _varint(raw, pos)
        if field_type not in (1, 2) or length <= 0 or pos + length > len(raw):
            return False
        fields[field_type] = raw[pos : pos + length]
        pos += length
        if field_type == 2:
            break
    location = fields.get(1, b"")
    return 2 in fields and all(32 < byte < 127 for byte in location)


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(raw) and shift < 35:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return -1, pos


VALIDATORS: Mapping[str, Callable[[str], bool]] = {
    "github_crc32": _prefixed_crc32,
    "npm_crc32": _prefixed_crc32,
    "pypi_macaroon": _pypi_macaroon,
}


# -- rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecretRule:
    id: str
    description: str
    pattern: re.Pattern[str]
    keywords: tuple[str, ...]
    severity: Severity
    revoke: str
    before: int = 0
    after: int = _DEFAULT_AFTER
    secret_group: int | None = None
    validator: str | None = None
    entropy: float | None = None
    min_classes: int = 0
    near: tuple[str, ...] = ()
    near_distance: int = 0
    paths: re.Pattern[str] | None = None
    allow: tuple[re.Pattern[str], ...] = ()
    allow_match: tuple[re.Pattern[str], ...] = ()
    allow_key: tuple[re.Pattern[str], ...] = ()
    anchor: bool = False  # the match starts at a keyword hit, or at most `before` chars earlier
    # the severity in a package's tests or docs (None: the same as anywhere)
    test_severity: Severity | None = None
    # the watcher.verify provider that can tell whether a found value is live (None: none can)
    verify: str | None = None
    # the other half that provider needs (an AWS key id, a Twilio SID), searched near the secret
    companion: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class Allowlist:
    sha256: frozenset[str]
    placeholder_substrings: tuple[str, ...]
    stopwords: frozenset[str]


_LEADING_BREAKS = re.compile(r"^(?:\s|\\[nr])+")


def redacted_form(value: str) -> str:
    """How a secret is shown. A PEM body starts after a line break (or a JSON-escaped one): show
    the key's first characters, not that."""
    return redact(_LEADING_BREAKS.sub("", value))


@dataclass(frozen=True, slots=True)
class SecretMatch:
    """One credential found in a text. `value` is the raw secret: it stays inside this module's
    callers in memory and is never logged, stored or reported."""

    rule: SecretRule
    start: int  # offset of the secret in the text
    end: int
    value: str
    # False for a value in a checksummed format whose checksum is wrong: reported `low` ("probably a
    # test value") so a reader sees it was considered; it still claims its text so a generic rule
    # does not report the same string.
    valid: bool = True

    @property
    def redacted(self) -> str:
        return redacted_form(self.value)


class RuleSet:
    """The compiled rules and the keyword index built from them.

    One pass of a multi-literal engine (`watcher.scanning.needles`: hyperscan, or a stdlib regex
    fallback) finds every occurrence of every keyword, overlapping ones included, so a rule keyed on
    `sk-` also sees the `sk-` that starts `sk-ant-`."""

    def __init__(
        self, rules: Iterable[SecretRule], allowlist: Allowlist, *, engine: str | None = None
    ) -> None:
        self.rules: tuple[SecretRule, ...] = tuple(rules)
        self.allowlist = allowlist
        keywords: set[str] = set()
        for rule in self.rules:
            if not rule.keywords:
                raise ValueError(f"secret rule {rule.id}: keywords are required")
            keywords.update(rule.keywords)
        self._keywords = tuple(sorted(keywords))
        self._reach = tuple(max(map(len, rule.keywords)) + rule.after for rule in self.rules)
        # An anchored rule's keywords are checked by its gate inside the needle pass; the others'
        # are literals, except those of a rule limited to some paths, which are looked for only
        # where the path matches.
        gates: list[Gate | None] = [
            rule_gate(
                rule.id, rule.pattern.pattern, rule.keywords, reach + rule.before, rule.before
            )
            if rule.anchor
            else None
            for rule, reach in zip(self.rules, self._reach, strict=True)
        ]
        self._gates = tuple(gates)
        literals = {
            keyword
            for rule, gate in zip(self.rules, gates, strict=True)
            if gate is None and rule.paths is None
            for keyword in rule.keywords
        }
        self._literals = frozenset(literals)
        by_key: dict[str, list[int]] = {}
        for index, (rule, gate) in enumerate(zip(self.rules, gates, strict=True)):
            for key in (gate.name,) if gate is not None else rule.keywords:
                by_key.setdefault(key, []).append(index)
        self._rules_by_key = by_key
        self._path_rules = tuple(i for i, rule in enumerate(self.rules) if rule.paths is not None)
        self._index = NeedleIndex(
            literals, gates=[g for g in gates if g is not None], engine=engine
        )

    @property
    def engine(self) -> str:
        """Which keyword engine runs: `hyperscan`, or `re` where its wheel is missing."""
        return self._index.engine

    @property
    def keywords(self) -> tuple[str, ...]:
        """Every rule's keywords."""
        return self._keywords

    @property
    def literal_keywords(self) -> tuple[str, ...]:
        """The keywords `scan` expects in `hits` as literals (the gates cover the others)."""
        return self._index.needles

    @property
    def gates(self) -> tuple[Gate, ...]:
        """The gates `scan` expects in `hits` under their names."""
        return self._index.gates

    def subset(self, ids: Iterable[str]) -> RuleSet:
        """The rules named, in their order, with the same allowlist and engine."""
        wanted = set(ids)
        return RuleSet(
            [rule for rule in self.rules if rule.id in wanted], self.allowlist, engine=self.engine
        )

    def scan(self, text: str, path: str = "", hits: Hits | None = None) -> list[SecretMatch]:
        """Every credential in `text`, at most one per stretch of text (the earlier rule wins);
        a match whose checksum fails has `valid` False. `hits`: where the keywords occur, when
        the caller already searched for them (with an index holding `literal_keywords` and
        `gates`)."""
        if hits is None:
            hits = self._index.find(text)
        candidates: list[SecretMatch] = []
        for index in self._rules_to_run(hits):
            rule = self.rules[index]
            if rule.paths is not None and not rule.paths.search(path):
                continue
            gate = self._gates[index]
            if gate is not None:
                lists = [hits[gate.name]] if gate.name in hits else []
            else:
                lists = [
                    hits[k] if k in self._literals else list(find_all(text, k))
                    for k in rule.keywords
                    if k in hits or k not in self._literals
                ]
                lists = [each for each in lists if each]
            if not lists:
                continue
            # two keywords of one rule may start at one offset (one a prefix of the other)
            starts = lists[0] if len(lists) == 1 else sorted(set(itertools.chain(*lists)))
            if rule.anchor:
                candidates.extend(self._run_anchored(index, text, starts))
            else:
                candidates.extend(self._run_windows(index, text, starts))
        return self._resolve_overlaps(candidates)

    def _rules_to_run(self, hits: Hits) -> list[int]:
        """Indexes, in rule order, of the rules a hit names, and of those limited to some paths
        (their keywords are looked for only where the path matches)."""
        by_key = self._rules_by_key
        if len(hits) * 4 < len(self.rules):
            wanted = set(self._path_rules)
            for key in hits:
                wanted.update(by_key.get(key, ()))
            return sorted(wanted)
        return list(range(len(self.rules)))

    def _run_anchored(self, index: int, text: str, starts: list[int]) -> list[SecretMatch]:
        """The match starts at the keyword (`before` chars earlier at most): try exactly there."""
        rule = self.rules[index]
        match_at = rule.pattern.match
        reach = self._reach[index]
        found: list[SecretMatch] = []
        for start in starts:
            for at in range(max(0, start - rule.before), start + 1):
                match = match_at(text, at, at + reach + rule.before)
                if match is not None:
                    self._consider(rule, match, text, found)
                    break
        return found

    def _run_windows(self, index: int, text: str, starts: list[int]) -> list[SecretMatch]:
        """The match may start anywhere near the keyword: search merged windows around hits."""
        rule = self.rules[index]
        reach = self._reach[index]
        search = rule.pattern.finditer
        found: list[SecretMatch] = []
        lo = hi = -1
        for start in starts:
            if lo >= 0 and start - rule.before <= hi:
                hi = start + reach
                continue
            if lo >= 0:
                for match in search(text, lo, hi):
                    self._consider(rule, match, text, found)
            lo, hi = max(0, start - rule.before), start + reach
        if lo >= 0:
            for match in search(text, lo, hi):
                self._consider(rule, match, text, found)
        return found

    def _consider(
        self, rule: SecretRule, match: re.Match[str], text: str, found: list[SecretMatch]
    ) -> None:
        group = _secret_group(rule, match)
        start, end = match.span(group)
        if found and found[-1].start == start and found[-1].end == end:
            return
        value = match.group(group)
        if rule.validator is not None and not VALIDATORS[rule.validator](value):
            found.append(SecretMatch(rule, start, end, value, valid=False))
        elif self._accepts(rule, value, match, text):
            found.append(SecretMatch(rule, start, end, value))

    def _accepts(self, rule: SecretRule, value: str, match: re.Match[str], text: str) -> bool:
        # every test must pass, so the order is only cost: the C-level ones first (most keyword
        # hits in code are identifiers an allow pattern or the class count turns away)
        if rule.min_classes and _char_classes(value) < rule.min_classes:
            return False
        if any(allow.search(value) for allow in rule.allow):
            return False
        if rule.entropy is not None and shannon_entropy(value) < rule.entropy:
            return False
        if any(allow.search(match.group()) for allow in rule.allow_match):
            return False
        if rule.allow_key:
            key = text[
                max(0, match.start() - _KEY_WINDOW) : match.start(_secret_group(rule, match))
            ]
            if any(allow.search(key) for allow in rule.allow_key):
                return False
        if rule.near:
            lo = max(0, match.start() - rule.near_distance)
            hi = match.end() + rule.near_distance
            if not any(text.find(word, lo, hi) != -1 for word in rule.near):
                return False
        return not is_placeholder(value, self.allowlist)

    def _resolve_overlaps(self, candidates: list[SecretMatch]) -> list[SecretMatch]:
        """Candidates arrive grouped by rule in rule order: keep each unless it overlaps one kept
        before it. Kept spans never overlap, so they stay sorted and bisect finds the neighbours."""
        starts: list[int] = []
        kept: list[SecretMatch] = []
        for candidate in candidates:
            at = bisect.bisect_left(starts, candidate.start)
            if at < len(kept) and kept[at].start < candidate.end:
                continue
            if at > 0 and kept[at - 1].end > candidate.start:
                continue
            starts.insert(at, candidate.start)
            kept.insert(at, candidate)
        return kept


def _secret_group(rule: SecretRule, match: re.Match[str]) -> int:
    if rule.secret_group is not None:
        return rule.secret_group
    for index in range(1, (match.re.groups or 0) + 1):
        if match.start(index) != -1:
            return index
    return 0


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's own character distribution: log2(size) - Σ n·log2(n) /
    size over the characters' counts (one log per distinct count, most of them from a table)."""
    if not value:
        return 0.0
    size = len(value)
    table = _N_LOG2_N
    total = 0.0
    for n in Counter(value).values():
        total += table[n] if n < len(table) else n * math.log2(n)
    return math.log2(size) - total / size


_N_LOG2_N = [0.0] + [n * math.log2(n) for n in range(1, 257)]
# ASCII character classes, each one C-level search (the loop below is for other text)
_ASCII_CLASSES = tuple(re.compile(p) for p in ("[a-z]", "[A-Z]", "[0-9]", r"[^A-Za-z0-9._\-/]"))


def _char_classes(value: str) -> int:
    """How many of lower, upper, digit and special characters the value mixes; `.-_/` do not count
    as special because identifiers, scope names and paths are made of them."""
    if value.isascii():
        return sum(1 for pattern in _ASCII_CLASSES if pattern.search(value))
    lower = upper = digit = special = False
    for char in value:
        if char.islower():
            lower = True
        elif char.isupper():
            upper = True
        elif char.isdigit():
            digit = True
        elif char not in "._-/":
            special = True
    return lower + upper + digit + special


def is_placeholder(value: str, allowlist: Allowlist) -> bool:
    """Documented examples, template variables, filler and repeated characters."""
    if hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest() in allowlist.sha256:
        return True
    lowered = value.lower()
    if lowered in allowlist.stopwords:
        return True
    # In a long random value (a key body) a short word turns up by chance: only long ones count.
    long_value = len(value) > _LONG_VALUE
    if any(
        part in lowered
        for part in allowlist.placeholder_substrings
        if not long_value or len(part) >= _LONG_VALUE_WORD
    ):
        return True
    # `AKIAXXXXXXXXXXXXXXXX`, `sk_live_000…`: a long run of one character, or very few distinct ones
    if _longest_run(value) >= max(6, len(value) // 4):
        return True
    return len(set(value)) <= min(8, max(2, len(value) // 8))


def _longest_run(value: str) -> int:
    best = run = 0
    previous = ""
    for char in value:
        run = run + 1 if char == previous else 1
        previous = char
        best = max(best, run)
    return best


# -- loading -------------------------------------------------------------------------------------


def load_rules(path: Path = RULES_FILE) -> RuleSet:
    """Read and compile a rules file; a malformed rule raises ValueError naming it."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    allow = data.get("allowlist", {})
    allowlist = Allowlist(
        sha256=frozenset(allow.get("sha256", ())),
        placeholder_substrings=tuple(s.lower() for s in allow.get("placeholder_substrings", ())),
        stopwords=frozenset(s.lower() for s in allow.get("stopwords", ())),
    )
    rules = [_parse_rule(table) for table in data.get("rules", [])]
    ids = [rule.id for rule in rules]
    if len(set(ids)) != len(ids):
        raise ValueError("secret rules: duplicate rule ids")
    return RuleSet(rules, allowlist)


def _parse_rule(table: dict[str, Any]) -> SecretRule:
    rule_id = str(table.get("id", "?"))
    try:
        validator = table.get("validator")
        if validator is not None and validator not in VALIDATORS:
            raise ValueError(f"unknown validator {validator!r}")
        paths = table.get("paths")
        return SecretRule(
            id=rule_id,
            description=str(table["description"]),
            pattern=re.compile(table["regex"]),
            keywords=tuple(table["keywords"]),
            severity=Severity(table["severity"]),
            revoke=str(table["revoke"]),
            before=int(table.get("before", 0)),
            after=int(table.get("after", _DEFAULT_AFTER)),
            secret_group=table.get("secret_group"),
            validator=validator,
            entropy=table.get("entropy"),
            min_classes=int(table.get("min_classes", 0)),
            near=tuple(table.get("near", ())),
            near_distance=int(table.get("near_distance", 0)),
            paths=re.compile(paths) if paths else None,
            allow=tuple(re.compile(p) for p in table.get("allow", ())),
            allow_match=tuple(re.compile(p) for p in table.get("allow_match", ())),
            allow_key=tuple(re.compile(p) for p in table.get("allow_key", ())),
            anchor=bool(table.get("anchor", False)),
            test_severity=Severity(table["test_severity"]) if "test_severity" in table else None,
            verify=table.get("verify"),
            companion=re.compile(table["companion"]) if "companion" in table else None,
        )
    except (KeyError, TypeError, ValueError, re.error) as exc:
        raise ValueError(f"secret rule {rule_id}: {exc}") from exc


@cache
def _binary_rules(rules: RuleSet) -> RuleSet:
    return rules.subset(BINARY_RULE_IDS)


@cache
def default_rules() -> RuleSet:
    """The shipped rule set, compiled once per process (it is immutable)."""
    return load_rules()


# -- the check -----------------------------------------------------------------------------------

# A generic secret whose key names a signing secret (JWT, session, cookie, framework secret keys),
# found in a production configuration file, is high.
_SIGNING_RULES = frozenset(["generic-secret", "generic-secret-unquoted"])
_SIGNING_KEY = re.compile(
    r"(?i)(?:jwt|session|cookie|signing|hmac|csrf|token)[\w.-]{0,20}(?:secret|key)"
    r"|secret[_-]?key(?:[_-]?base)?|app[_-]?key|secret[_-]?token"
)


class SecretCheck(Check):
    category = Category.SECRET
    reads_binary_strings = True

    def __init__(self, rules: RuleSet | None = None) -> None:
        self._rules = rules if rules is not None else default_rules()
        # raw values of verifiable credentials, kept only when ScanOptions.keep_credentials says so
        self.credentials: list[Credential] = []
        self._binary_rules = _binary_rules(self._rules)

    def needles(self) -> Iterable[str]:
        return (*self._rules.literal_keywords, *PREFIXES)

    def gates(self) -> Iterable[Gate]:
        return self._rules.gates

    def binary_needles(self) -> Iterable[str]:
        return self._binary_rules.keywords

    def text(self, doc: TextDoc, ctx: ScanContext) -> Iterable[Finding]:
        if doc.origin == "binary-strings":
            # printable runs of a binary: checksummed and fixed-prefix rules only, decoded never
            return [
                self._finding(match, doc.path, doc.text.count("\n", 0, match.start) + 1)
                for match in self._binary_rules.scan(doc.text, doc.path)
                if match.valid
            ]
        found: list[tuple[SecretMatch, int, str | None]] = [
            (match, match.start, None) for match in self._scan(doc.text, doc.path, doc.hits)
        ]
        # one encoding deep (base64 blobs, JWT payloads), reported at the blob's line
        for decoded in decoded_texts(doc.text, doc.hits):
            found.extend(
                (match, decoded.start, decoded.encoding)
                for match in self._scan(decoded.text, doc.path)
            )
        if not found:
            return []
        found.sort(key=lambda item: item[1])
        per_rule: Counter[str] = Counter()
        findings: list[Finding] = []
        last_by_rule: dict[str, Finding] = {}
        line, line_offset = 1, 0
        production = is_production_config(doc.path)
        for match, offset, encoding in found:  # in text order: count lines incrementally
            line += doc.text.count("\n", line_offset, offset)
            line_offset = offset
            rule = match.rule
            per_rule[rule.id] += 1
            if per_rule[rule.id] > _MAX_MATCHES_PER_RULE:
                extra = last_by_rule[rule.id].evidence
                extra["matches_not_reported"] = extra.get("matches_not_reported", 0) + 1
                continue
            signing = (
                rule.id in _SIGNING_RULES
                and production
                and _SIGNING_KEY.search(doc.text, max(0, offset - _KEY_WINDOW), offset) is not None
            )
            finding = self._finding(match, doc.path, line, encoding, signing=signing)
            last_by_rule[rule.id] = finding
            findings.append(finding)
            if ctx.options.keep_credentials and rule.verify and match.valid and encoding is None:
                self.credentials.append(self._credential(finding, match, doc.text))
        return findings

    def revise(self, findings: list[Finding], ctx: ScanContext) -> None:
        """A file beside a `conftest.py` is a test, whatever its directory is called: flagged, at
        its rule's test severity (known only once the whole archive was read)."""
        rules = {rule.id: rule for rule in self._rules.rules}
        for finding in findings:
            rule = rules.get(finding.rule)
            if (
                rule is None
                or finding.category is not Category.SECRET
                or finding.evidence.get("in_test_path")
                or not in_test_dir(finding.path, ctx.test_dirs)
            ):
                continue
            finding.evidence.pop("in_docs_path", None)
            finding.evidence["in_test_path"] = True
            if rule.test_severity is not None:
                finding.severity = min(finding.severity, rule.test_severity, key=lambda s: s.rank)

    def _credential(self, finding: Finding, match: SecretMatch, text: str) -> Credential:
        rule = match.rule
        assert rule.verify is not None
        companion = None
        if rule.companion is not None:
            lo, hi = max(0, match.start - _COMPANION_REACH), match.end + _COMPANION_REACH
            near = [m.group() for m in rule.companion.finditer(text, lo, hi)]
            companion = next((c for c in near if c != match.value), None)
        return Credential(finding, rule.verify, match.value, companion)

    def _scan(self, text: str, path: str, hits: Hits | None = None) -> list[SecretMatch]:
        """The rule set's matches, less a bad-checksum shape that is a placeholder (`ghp_aaaa…`)."""
        allowlist = self._rules.allowlist
        return [
            match
            for match in self._rules.scan(text, path, hits)
            if match.valid or not is_placeholder(match.value, allowlist)
        ]

    def _finding(
        self,
        match: SecretMatch,
        path: str,
        line: int,
        encoding: str | None = None,
        *,
        signing: bool = False,
    ) -> Finding:
        rule = match.rule
        redacted = match.redacted
        evidence: dict[str, Any] = {
            "redacted": redacted,
            "rule_description": rule.description,
            "revoke": rule.revoke,
        }
        if encoding is not None:
            evidence["encoding"] = encoding
        severity = rule.severity
        message = f"{rule.description}: {redacted}"
        if rule.validator is not None:
            evidence["checksum_valid"] = match.valid
            if not match.valid:
                # the shape of the credential but not its checksum: a made-up or test value
                severity = Severity.LOW
                noun = rule.description.split(" (", 1)[0]
                message = f"shape of {noun}, checksum invalid: probably a test value: {redacted}"
        if signing:
            # a JWT/session/cookie signing key of the production deployment: sessions and tokens
            # can be forged with it
            severity = max(severity, Severity.HIGH, key=lambda s: s.rank)
            evidence["signing_secret_in_production_config"] = True
        location = location_of(path)
        evidence.update(location_evidence(location))
        if location is not None and rule.test_severity is not None:
            # a fixture key or a documented example: reported and flagged, not paged. Rules for
            # live provider credentials keep their severity: a real token in a test is a leak.
            severity = min(severity, rule.test_severity, key=lambda s: s.rank)
        return self.finding(
            rule.id,
            severity,
            path,
            message,
            line=line,
            key=redacted,
            evidence=evidence,
        )
