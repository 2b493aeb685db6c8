"""The multi-literal engines behind the keyword prefilter: hyperscan and the stdlib fallback report
exactly what a plain `str.find` loop does — every occurrence, overlapping ones included, at
character offsets even in text that is not ASCII."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakecreds import POSITIVES
from watcher.scanning.checks.secrets import RuleSet, default_rules
from watcher.scanning.needles import Gate, NeedleIndex

ENGINES = ["hyperscan", "re"]


def naive(needles: list[str], text: str) -> dict[str, list[int]]:
    hits: dict[str, list[int]] = {}
    for needle in set(needles):
        starts = []
        at = text.find(needle)
        while at != -1:
            starts.append(at)
            at = text.find(needle, at + 1)
        if starts:
            hits[needle] = starts
    return hits


# Small alphabets make overlaps, shared prefixes and repeats likely; é, ☃ and 𝄞 take 2, 3 and 4
# UTF-8 bytes, so byte and character offsets differ.
ALPHABET = "abAB-_:/é☃𝄞\n"
needle_lists = st.lists(st.text(ALPHABET, min_size=1, max_size=5), min_size=1, max_size=8)


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=300, deadline=None)
@given(needles=needle_lists, text=st.text(ALPHABET, max_size=200))
def test_engine_matches_str_find(engine: str, needles: list[str], text: str) -> None:
    assert NeedleIndex(needles, engine=engine).find(text) == naive(needles, text)


@pytest.mark.parametrize("engine", ENGINES)
def test_prefix_and_overlap_cases(engine: str) -> None:
    index = NeedleIndex(["sk-", "sk-ant-", "aa", "token"], engine=engine)
    text = "x sk-ant-1 aaaa é token"
    assert index.find(text) == {"sk-": [2], "sk-ant-": [2], "aa": [11, 12, 13], "token": [18]}


def test_rejects_empty_needles_and_unknown_engines() -> None:
    with pytest.raises(ValueError):
        NeedleIndex(["ok", ""])
    with pytest.raises(ValueError, match="unknown engine"):
        NeedleIndex(["ok"], engine="grep")


def test_installed_default_is_hyperscan() -> None:
    # The suite runs where the wheel exists: the fast path is what the other tests exercise.
    assert NeedleIndex(["x"]).engine == "hyperscan"
    assert default_rules().engine == "hyperscan"


@pytest.mark.parametrize("rule_id", sorted(POSITIVES))
def test_rule_sets_on_both_engines_find_the_same_credentials(rule_id: str) -> None:
    positive = POSITIVES[rule_id](random.Random(rule_id))
    # non-ASCII before the credential: the hyperscan path maps byte offsets back to characters
    text = "const é = '☃𝄞';\n" + positive.text
    shipped = default_rules()
    by_engine = {}
    for engine in ENGINES:
        rules = RuleSet(shipped.rules, shipped.allowlist, engine=engine)
        by_engine[engine] = [
            (m.rule.id, text[m.start : m.end]) for m in rules.scan(text, positive.path)
        ]
    assert by_engine["hyperscan"] == by_engine["re"]
    assert (rule_id, positive.secret) in by_engine["re"]


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=100, deadline=None)
@given(needles=st.lists(st.text("abAB-_:/", min_size=1, max_size=4), min_size=1, max_size=6),
       data=st.binary(max_size=200))  # fmt: skip
def test_bytes_engines_match_bytes_find(engine: str, needles: list[str], data: bytes) -> None:
    # a binary's content: byte offsets, ASCII needles
    expected = naive(needles, data.decode("latin-1"))
    assert NeedleIndex(needles, engine=engine).find_bytes(data) == expected


# -- gates: a rule's regex checked inside the needle pass ----------------------------------------


def _ungated(rules: RuleSet) -> RuleSet:
    # the stdlib engine has no gates: every keyword occurrence reaches the rules
    return RuleSet(rules.rules, rules.allowlist, engine="re")


def _matches(rules: RuleSet, text: str, path: str) -> list[tuple[str, int, int, bool]]:
    return [(m.rule.id, m.start, m.end, m.valid) for m in rules.scan(text, path)]


def test_the_shipped_anchored_rules_have_gates_and_common_keywords_are_not_literals() -> None:
    rules = default_rules()
    gated = {gate.name.rsplit(":", 1)[1] for gate in rules.gates}
    assert {"generic-secret", "http-auth-header", "twilio-auth-token", "twilio-api-key"} <= gated
    # the backreference of the PEM rules has no hyperscan form: those stay literal
    assert "-----BEGIN " in rules.literal_keywords
    assert not {"token", "Token", "auth", "AC", "SK"} & set(rules.literal_keywords)


def test_a_gate_drops_keyword_occurrences_no_rule_can_use() -> None:
    rules = default_rules()
    text = "function getToken(e){return e.authToken||AC(e)}" * 50
    hits = NeedleIndex(rules.literal_keywords, gates=rules.gates).find(text)
    assert not any(name.startswith("\x00gate:") for name in hits)
    # the same text through the stdlib engine hands every occurrence to the rules
    union = NeedleIndex(rules.literal_keywords, gates=rules.gates, engine="re").find(text)
    assert len(union["\x00gate:generic-secret"]) == 150  # Token, auth, Token


@pytest.mark.parametrize("rule_id", sorted(POSITIVES))
@pytest.mark.parametrize("prefix", ["", "const é = '☃𝄞';\n", "K\u212a ſ ı İ\n"])
def test_gated_and_ungated_rule_sets_find_the_same(rule_id: str, prefix: str) -> None:
    positive = POSITIVES[rule_id](random.Random(rule_id))
    shipped = default_rules()
    text = prefix + positive.text
    assert _matches(shipped, text, positive.path) == _matches(
        _ungated(shipped), text, positive.path
    )


# Fragments of keywords, assignments, quotes and values, and characters that are not ASCII where
# the rules' classes can take them (a Kelvin sign matches `(?i)k`, an ideograph `\w`).
FRAGMENTS = [
    "token",
    "Token",
    "TOKEN",
    "auth",
    "Auth",
    "password",
    "secret",
    "api_key",
    "apiKey",
    "AC",
    "SK",
    "AKIA",
    "Authorization",
    "Bearer ",
    "api-key",
    "X-Api-Key",
    "Token:",
    "://",
    "@",
    ":",
    "=",
    " = ",
    ": ",
    '"',
    "'",
    "`",
    "\n",
    "\x1c",
    "\t",
    " ",
    "(",
    ")",
    ",",
    "<token>",
    "</token>",
    "0123456789abcdef0123456789abcdef",
    "ZXhhbXBsZVZhbHVlMTIz",
    "Xk9!qv#L2m",
    "s3cr3tValue9",
    "user",
    "host.internal",
    "\u212a",
    "ſ",
    "ı",
    "é",
    "漢字",
    "𝄞",
    "?",
    "sk_live_",
    "ghp_",
]


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(st.sampled_from(FRAGMENTS), max_size=40))
def test_gates_never_lose_a_match(pieces: list[str]) -> None:
    text = "".join(pieces)
    shipped = default_rules()
    for path in ("src/app.js", "config/.env"):
        assert _matches(shipped, text, path) == _matches(_ungated(shipped), text, path)


def test_compiled_gates_are_cached_and_a_bad_cache_file_is_compiled_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHER_CACHE_DIR", str(tmp_path))
    gate = Gate(name="\x00gate:t", pattern="token[=:]", keywords=("token",), width=6)
    text = "a token b token= c"
    first = NeedleIndex(["b"], gates=[gate]).find(text)
    cached = sorted(tmp_path.glob("hyperscan-*.db"))
    assert cached and first == {"b": [8], "\x00gate:t": [10]}
    assert NeedleIndex(["b"], gates=[gate]).find(text) == first  # loaded from the cache
    for path in cached:
        path.write_bytes(b"not a database")
    assert NeedleIndex(["b"], gates=[gate]).find(text) == first
    monkeypatch.setenv("WATCHER_CACHE_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("a file, not a directory")
    assert NeedleIndex(["b"], gates=[gate]).find(text) == first  # cache unwritable: compiled
