"""Recall and false alarms of our secret rules on gitleaks' own per-rule examples.

gitleaks keeps, beside each rule in `cmd/generate/config/rules/*.go`, the strings the rule must
find (true positives) and must not (false positives). Many positives are built in Go at generation
time: a random secret from a small regex, set into a couple of dozen assignment contexts (INI,
JSON, YAML, XML, C#, Go, Java, Kotlin, PHP, Python, Make, Logstash …). This script reads those Go
files, evaluates the handful of expression forms they use with its own small evaluator (its own
random-string generator and its own context templates, one file type per context), runs our
RuleSet over every example and prints, per gitleaks rule, how many positives we report at medium
or above and how many negatives raise a finding at medium or above. Nothing is copied out of the
checkout; the examples live only in memory.

By design we do not report at medium a random token in a checksummed format whose checksum is
wrong (GitHub, npm; PyPI tokens that are not macaroons) — it is a `low` finding — nor a Stripe
test-mode key (`low`). Those positives are counted apart, as `excluded`.

    .venv/bin/python bench/gitleaks_corpus.py /path/to/gitleaks [--seed 1] [--show-misses]
"""

from __future__ import annotations

import argparse
import random
import re
import re._parser as sre  # the stdlib regex parser: its tree is all the generator needs
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from watcher.model import Severity  # noqa: E402
from watcher.scanning.checks.base import ScanContext, TextDoc  # noqa: E402
from watcher.scanning.checks.secrets import (  # noqa: E402
    VALIDATORS,
    SecretCheck,
    default_rules,
)

# The gitleaks rule files for the providers our rule set claims, and the family each rule id is
# reported under. Rules outside these families (Bedrock keys, a bare `"type": "service_account"`
# line, PKCS#12 path rules, JWTs as such) are not claimed and not measured.
CLAIMED_FILES = (
    "aws.go", "gcp.go", "azure.go", "npm.go", "pypi.go", "github.go", "gitlab.go", "slack.go",
    "stripe.go", "twilio.go", "sendgrid.go", "anthropic.go", "openai.go", "privatekey.go",
    "generic.go", "curl.go",
)  # fmt: skip
NOT_CLAIMED = {
    "aws-amazon-bedrock-api-key-long-lived",
    "aws-amazon-bedrock-api-key-short-lived",
    "gcp-service-account",
    "pkcs12-file",
}

# -- Go source: tokens and the expression forms the rule files use ------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<comment>//[^\n]*|/\*.*?\*/)|(?P<raw>`[^`]*`)|(?P<str>"(?:\\.|[^"\\\n])*")"""
    r"""|(?P<name>[A-Za-z_][\w.]*)|(?P<num>\d+)|(?P<ellipsis>\.\.\.)|(?P<op>:=|[-+(){}\[\],=:*&!<>.;%])""",
    re.S,
)
_GO_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    '"': '"',
    "\\": "\\",
    "'": "'",
    "a": "\a",
    "0": "\0",
}


def _unquote(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif nxt == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            out.append(_GO_ESCAPES.get(nxt, nxt))
            i += 2
    return "".join(out)


@dataclass
class Tok:
    kind: str
    text: str


def tokenize(src: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(src):
        match = _TOKEN.match(src, pos)
        if match is None:  # a rune literal or something else we never evaluate
            out.append(Tok("op", src[pos]))
            pos += 1
            continue
        pos = match.end()
        kind = match.lastgroup or "op"
        if kind in ("ws", "comment"):
            continue
        if kind in ("raw", "str"):
            out.append(Tok("str", _unquote(match.group())))
        else:
            out.append(Tok(kind, match.group()))
    return out


class Unsupported(Exception):
    """An expression form this evaluator does not know: the example is skipped and counted."""


# -- random strings from the small regexes the examples use -------------------------------------

_CATEGORY = {
    "CATEGORY_DIGIT": "0123456789",
    "CATEGORY_WORD": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
    "CATEGORY_SPACE": " ",
}


def random_from_regex(pattern: str, rng: random.Random) -> str:
    def pick_set(items: Any) -> str:
        chars: list[str] = []
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                chars.append(chr(arg))
            elif name == "RANGE":
                chars.extend(chr(c) for c in range(arg[0], arg[1] + 1))
            elif name == "CATEGORY":
                chars.extend(_CATEGORY[str(arg)])
            elif name == "NEGATE":
                raise Unsupported("negated class")
        return rng.choice(chars)

    def emit(tree: Any) -> str:
        out: list[str] = []
        for op, arg in tree:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(arg))
            elif name == "IN":
                out.append(pick_set(arg))
            elif name == "ANY":
                out.append(rng.choice("abcdefghij0123456789"))
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, high, sub = arg
                high = low + 20 if high == sre.MAXREPEAT else high
                out.extend(emit(sub) for _ in range(rng.randint(low, high)))
            elif name == "SUBPATTERN":
                out.append(emit(arg[-1]))
            elif name == "BRANCH":
                out.append(emit(rng.choice(arg[1])))
            elif name == "CATEGORY":
                out.append(rng.choice(_CATEGORY[str(arg)]))
            elif name == "AT":
                continue
            else:
                raise Unsupported(f"regex op {name}")
        return "".join(out)

    return emit(sre.parse(pattern))


# The size helpers of the rule files: name -> character class (what each helper is documented to
# produce: digits, lower hex, lower alphanumerics, and those with a few separators).
_CLASSES = {
    "utils.Numeric": "[0-9]",
    "utils.Hex": "[a-f0-9]",
    "utils.AlphaNumeric": "[a-z0-9]",
    "utils.AlphaNumericExtendedShort": "[a-z0-9_-]",
    "utils.AlphaNumericExtended": "[a-z0-9=_-]",
    "utils.AlphaNumericExtendedLong": "[a-z0-9/=_+-]",
}

# -- contexts: one assignment form per line of code, each in the file type it belongs to ---------
# {k} is the key stem, {K} the same upper-cased, {v} the secret.
CONTEXTS: tuple[tuple[str, str, str], ...] = (
    ("ini quoted", "settings.ini", '{k}Token="{v}"'),
    ("ini quoted spaced", "settings.ini", '{k}Token = "{v}"'),
    ("ini bare", "settings.ini", "{k}Token={v}"),
    ("ini bare spaced", "settings.ini", "{k}Token = {v}"),
    ("json", "settings.json", '{{\n  "{k}_token": "{v}"\n}}'),
    ("json embedded env", "settings.json", '{{"app.env": "{K}_TOKEN={v}\\nDEBUG=false"}}'),
    ("xml element, own line", "settings.xml", "<{k}Token>\n  {v}\n</{k}Token>"),
    ("yaml bare", "settings.yaml", "{k}_token: {v}"),
    ("yaml single", "settings.yaml", "{k}_token: '{v}'"),
    ("yaml double", "settings.yaml", '{k}_token: "{v}"'),
    ("csharp", "Settings.cs", 'private string {k}Token = "{v}";'),
    ("go var typed", "settings.go", 'var {k}Token string = "{v}"'),
    ("go short", "settings.go", '{k}Token := "{v}"'),
    ("go raw", "settings.go", "{k}Token := `{v}`"),
    ("java", "Settings.java", 'String {k}Token = "{v}";'),
    ("kotlin", "Settings.kt", 'var {k}Token = "{v}"'),
    ("php append", "settings.php", '${k}Token .= "{v}";'),
    ("python single", "settings.py", "{k}Token = '{v}'"),
    ("python double", "settings.py", '{k}Token = "{v}"'),
    ("java setter", "Settings.java", 'System.setProperty("{K}_TOKEN", "{v}");'),
    ("logstash", "pipeline.conf", '  "{k}Token" => "{v}"'),
    ("make recursive", "Makefile", '{K}_TOKEN = "{v}"'),
    ("make simple", "Makefile", '{K}_TOKEN := "{v}"'),
    ("make posix", "Makefile", '{K}_TOKEN ::= "{v}"'),
    ("make immediate", "Makefile", '{K}_TOKEN :::= "{v}"'),
    ("make conditional", "Makefile", '{K}_TOKEN ?= "{v}"'),
)
# literal example strings carry no file of their own: a neutral source path
LITERAL_PATH = "src/snippet.txt"


@dataclass
class Example:
    text: str
    path: str
    context: str


def in_contexts(stem: str, secret: str) -> list[Example]:
    return [
        Example(tpl.format(k=stem, K=stem.upper(), v=secret), path, name)
        for name, path, tpl in CONTEXTS
    ]


def single_context(stem: str, secret: str) -> Example:
    return Example(f'{stem}_api_token = "{secret}"', LITERAL_PATH, "single")


class Evaluator:
    """Evaluates one function body's `tps`/`fps` expressions."""

    def __init__(self, toks: list[Tok], rng: random.Random) -> None:
        self.toks, self.pos, self.rng = toks, 0, rng
        self.env: dict[str, Any] = {}

    def peek(self, offset: int = 0) -> Tok | None:
        at = self.pos + offset
        return self.toks[at] if at < len(self.toks) else None

    def take(self, text: str | None = None) -> Tok:
        tok = self.toks[self.pos]
        if text is not None and tok.text != text:
            raise Unsupported(f"expected {text!r}, got {tok.text!r}")
        self.pos += 1
        return tok

    def expr(self) -> Any:
        value = self.term()
        while (tok := self.peek()) is not None and tok.text == "+":
            self.take()
            right = self.term()
            value = _concat(value, right)
        return value

    def term(self) -> Any:
        tok = self.take()
        if tok.kind == "str":
            return tok.text
        if tok.text == "[":
            self.take("]")
            self.take("string")
            return self.items("{", "}")
        if tok.kind != "name":
            raise Unsupported(f"token {tok.text!r}")
        name = tok.text
        if (nxt := self.peek()) is None or nxt.text != "(":
            if name in self.env:
                return self.env[name]
            raise Unsupported(f"name {name}")
        args = self.items("(", ")")
        return self.call(name, args)

    def items(self, open_: str, close: str) -> list[Any]:
        self.take(open_)
        out: list[Any] = []
        while (tok := self.peek()) is not None and tok.text != close:
            value = self.expr()
            if (nxt := self.peek()) is not None and nxt.kind == "ellipsis":
                self.take()
                out.extend(value)
            else:
                out.append(value)
            if (nxt := self.peek()) is not None and nxt.text == ",":
                self.take()
        self.take(close)
        return out

    def call(self, name: str, args: list[Any]) -> Any:
        if name in _CLASSES:
            return f"{_CLASSES[name]}{{{args[0]}}}"
        if name == "utils.Hex8_4_4_4_12":
            return "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
        if name == "secrets.NewSecret":
            return random_from_regex(args[0], self.rng)
        if name == "newPlausibleSecret":
            while True:
                value = random_from_regex(args[0], self.rng)
                if re.search("[1-9]", value):
                    return value
        if name == "fmt.Sprintf":
            template, *rest = args
            return template.replace("%%", "\0") % tuple(rest) if rest else template
        if name == "utils.GenerateSampleSecrets":
            return in_contexts(args[0], args[1])
        if name == "utils.GenerateSampleSecret":
            return single_context(args[0], args[1])
        if name == "append":
            base, *more = args
            return list(base) + list(more)
        raise Unsupported(f"call {name}")


def _concat(left: Any, right: Any) -> Any:
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    raise Unsupported("+ on a non-string")


def _as_examples(values: list[Any]) -> list[Example]:
    return [v if isinstance(v, Example) else Example(v, LITERAL_PATH, "literal") for v in values]


@dataclass
class GoRule:
    rule_id: str
    file: str
    tps: list[Example] = field(default_factory=list)
    fps: list[Example] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


_FUNC = re.compile(r"^func (\w+)\(\) \*config\.Rule \{$(.*?)^\}$", re.M | re.S)
_RULE_ID = re.compile(r'RuleID:\s*"([^"]+)"')


def read_rules(checkout: Path, rng: random.Random) -> Iterator[GoRule]:
    for name in CLAIMED_FILES:
        src = (checkout / "cmd/generate/config/rules" / name).read_text(encoding="utf-8")
        for func in _FUNC.finditer(src):
            body = func.group(2)
            rule_id = _RULE_ID.search(body)
            if rule_id is None or rule_id.group(1) in NOT_CLAIMED:
                continue
            rule = GoRule(rule_id.group(1), name)
            _evaluate_body(body, rule, rng)
            yield rule


def _evaluate_body(body: str, rule: GoRule, rng: random.Random) -> None:
    toks = tokenize(body)
    ev = Evaluator(toks, rng)
    i = 0
    while i < len(toks) - 2:
        tok, op = toks[i], toks[i + 1]
        if tok.text in ("tps", "fps") and op.text in (":=", "="):
            ev.pos = i + 2
            try:
                ev.env[tok.text] = _as_examples(ev.expr())
            except (Unsupported, IndexError, KeyError, TypeError, ValueError) as exc:
                rule.unsupported.append(f"{tok.text}: {exc}")
            i = max(i + 2, ev.pos)
            continue
        i += 1
    rule.tps = ev.env.get("tps", [])
    rule.fps = ev.env.get("fps", [])


# -- exclusions by design -----------------------------------------------------------------------

_CHECKSUMMED = re.compile(r"(?<![A-Za-z0-9_])(gh[pousr]_[A-Za-z0-9]{36}|npm_[A-Za-z0-9]{36})")
_PYPI = re.compile(r"pypi-AgE[\w-]{50,1000}")
_STRIPE_TEST = re.compile(r"(?<![A-Za-z0-9])[sr]k_test_[A-Za-z0-9]{10,}")


def exclusion(text: str) -> str | None:
    """Why a positive is not expected at medium or above, or None."""
    for token in _CHECKSUMMED.findall(text):
        validator = VALIDATORS["npm_crc32" if token.startswith("npm_") else "github_crc32"]
        if not validator(token):
            return "checksum invalid"
    for token in _PYPI.findall(text):
        if not VALIDATORS["pypi_macaroon"](token):
            return "not a PyPI macaroon"
    if _STRIPE_TEST.search(text):
        return "stripe test key"
    return None


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Tally:
    tp: int = 0
    found: int = 0
    excluded: int = 0
    excluded_low: int = 0
    fp: int = 0
    alarms: int = 0
    misses: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)


def measure(
    rules: list[GoRule], scan: Callable[[Example], list[tuple[str, Severity]]]
) -> dict[str, Tally]:
    tallies: dict[str, Tally] = defaultdict(Tally)
    for rule in rules:
        tally = tallies[rule.rule_id]
        for example in rule.tps:
            findings = scan(example)
            why = exclusion(example.text)
            if why is not None:
                tally.excluded += 1
                tally.excluded_low += bool(findings)
                continue
            tally.tp += 1
            if any(sev.rank >= Severity.MEDIUM.rank for _, sev in findings):
                tally.found += 1
            else:
                tally.misses.append(f"[{example.context}] {example.text[:160]!r} -> {findings}")
        for example in rule.fps:
            tally.fp += 1
            loud = [(r, s) for r, s in scan(example) if s.rank >= Severity.MEDIUM.rank]
            if loud:
                tally.alarms += 1
                tally.false_alarms.append(f"{example.text[:160]!r} -> {loud}")
    return tallies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gitleaks", type=Path, help="path of a local gitleaks checkout")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    rules = list(read_rules(args.gitleaks, rng))
    check = SecretCheck(default_rules())
    ctx = ScanContext(ecosystem=None, name="corpus", version="0")

    def scan(example: Example) -> list[tuple[str, Severity]]:
        found = check.text(TextDoc(example.path, example.text, example.path), ctx)
        return [(f.rule, f.severity) for f in found]

    tallies = measure(rules, scan)
    print(
        f"{'gitleaks rule':44} {'found/positives':>16} {'excl(low)':>10} {'alarms/negatives':>17}"
    )
    total = Tally()
    for rule_id in sorted(tallies):
        t = tallies[rule_id]
        for name in ("tp", "found", "excluded", "excluded_low", "fp", "alarms"):
            setattr(total, name, getattr(total, name) + getattr(t, name))
        print(
            f"{rule_id:44} {t.found:>7}/{t.tp:<8} {t.excluded:>4}({t.excluded_low:>3}) "
            f"{t.alarms:>8}/{t.fp:<8}"
        )
    skipped = [(r.rule_id, u) for r in rules for u in r.unsupported]
    recall = total.found / total.tp if total.tp else 0.0
    alarms = total.alarms / total.fp if total.fp else 0.0
    print(
        f"\nrecall at medium+: {total.found}/{total.tp} = {recall:.1%}   "
        f"excluded by design: {total.excluded} (of which reported low: {total.excluded_low})   "
        f"false alarms at medium+: {total.alarms}/{total.fp} = {alarms:.1%}"
    )
    if skipped:
        print(f"expressions not evaluated: {len(skipped)}")
        for rule_id, why in skipped:
            print(f"  {rule_id}: {why}")
    if args.show_misses:
        for rule_id in sorted(tallies):
            t = tallies[rule_id]
            for line in t.misses:
                print(f"MISS  {rule_id}: {line}")
            for line in t.false_alarms:
                print(f"ALARM {rule_id}: {line}")


if __name__ == "__main__":
    main()
