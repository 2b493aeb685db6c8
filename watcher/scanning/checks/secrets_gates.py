"""A secret rule's regex turned into a hyperscan `Gate`: a looser pattern that matches wherever
the rule can, so the needle pass reports only the keyword occurrences a rule could use.

Only anchored rules get a gate: their match starts at a keyword (at most `before` characters
earlier) and `RuleSet` tries it with `endpos` `reach + before` characters later, so a match ends at
most `reach + before` after its keyword's start. The gate's pattern is written from Python's own
parse of the regex (`re._parser`), made looser step by step, each step matching more:

- lookarounds and anchors are left out;
- a counted repeat with a wide range (`{8,200}`) or a high count (`{40}`) becomes `{m,}` with its
  floor capped at 8 (hyperscan compiles long counted repeats slowly);
- what the match can end with is cut to a short form (a trailing `x{8,200}` or `x{40}` is `x{8}`,
  a trailing optional part is dropped): a prefix of every match still matches, so one match
  reports one end, not one per character of a long value;
- a wide repeat of almost any character (`[\\s\\S]{1,300}`) ends the pattern there (it is slow
  to compile and, opened, would end a match at every later position): a prefix again;
- every place where Python could match a character that is not ASCII (`\\w`, `\\d`, `\\s`, any
  class, `i`, `k` and `s` under `(?i)`: `k` also matches the Kelvin sign) also takes `?`, the byte that
  stands for such a character when the needle pass reads non-ASCII text
  (`watcher.scanning.needles`). Over ASCII, Python's classes mean what they say byte for byte:
  `\\s` includes `\\x1c`-`\\x1f`, so it is spelled out rather than left to PCRE's.

A match of the regex at a keyword occurrence `K` thus ends at `E'` with a prefix that the pattern
matches, ending at `E <= E'`, and `E - (reach + before) <= K <= E + before`: the needle pass looks for
the keywords in `[E - width, E + tail]`. A regex with backreferences or conditionals gets no gate
(its keywords are then reported as literals).
"""

from __future__ import annotations

import importlib
from typing import Any

from watcher.scanning.needles import Gate

_parser: Any = importlib.import_module("re._parser")

_IGNORECASE: int = _parser.SRE_FLAG_IGNORECASE
_MAXREPEAT: int = _parser.MAXREPEAT
_PLACEHOLDER = ord("?")
_ALL = frozenset(range(256))
_DIGIT = frozenset(range(ord("0"), ord("9") + 1))
_WORD = frozenset(
    c for c in range(128) if chr(c).isalnum() or c == ord("_")
)  # ASCII letters, digits, underscore
_SPACE = frozenset([9, 10, 11, 12, 13, 32, 28, 29, 30, 31])  # Python's \s over ASCII
_CATEGORIES: dict[str, frozenset[int]] = {
    "CATEGORY_DIGIT": _DIGIT,
    "CATEGORY_NOT_DIGIT": _ALL - _DIGIT,
    "CATEGORY_WORD": _WORD,
    "CATEGORY_NOT_WORD": _ALL - _WORD,
    "CATEGORY_SPACE": _SPACE,
    "CATEGORY_NOT_SPACE": _ALL - _SPACE,
}
# repeats whose range is at least this wide are opened, with their floor capped at `_FLOOR`
_WIDE = 16
_FLOOR = 8


def rule_gate(
    rule_id: str, regex: str, keywords: tuple[str, ...], width: int, before: int
) -> Gate | None:
    """The gate of an anchored rule, or None when its regex cannot be loosened safely."""
    if not keywords or not all(k.isascii() for k in keywords):
        return None
    try:
        pattern = gate_pattern(regex)
    except ValueError:
        return None
    return Gate(
        name=f"\x00gate:{rule_id}",
        pattern=pattern,
        keywords=keywords,
        width=width,
        tail=before + max(map(len, keywords)),
    )


def gate_pattern(regex: str) -> str:
    """The looser hyperscan pattern of `regex` (ValueError when none can be made)."""
    try:
        parsed = _parser.parse(regex)
    except Exception as exc:  # re.error, and whatever a private module may raise
        raise ValueError(str(exc)) from exc
    ignorecase = bool(parsed.state.flags & _IGNORECASE)
    nodes = _trim(list(parsed.data))
    pattern, _ = _emit(nodes, ignorecase)
    if not pattern:
        raise ValueError("empty gate")
    return ("(?i:" if ignorecase else "(?-i:") + pattern + ")"


# -- loosening -----------------------------------------------------------------------------------


def _is(op: Any, name: str) -> bool:
    return str(op) == name


def _trim(nodes: list[Any]) -> list[Any]:
    """The shortest form of the sequence's end: a prefix of each of its matches matches."""
    nodes = list(nodes)
    while nodes:
        op, av = nodes[-1]
        if _is(op, "ASSERT") or _is(op, "ASSERT_NOT") or _is(op, "AT"):
            nodes.pop()
        elif _is(op, "MAX_REPEAT") or _is(op, "MIN_REPEAT"):
            low, _high, item = av
            if low == 0:
                nodes.pop()
                continue
            low = min(low, _FLOOR)
            nodes[-1] = (op, (low, low, item))
            return nodes
        elif _is(op, "SUBPATTERN"):
            group, add, delete, inner = av
            nodes[-1] = (op, (group, add, delete, _trim(list(inner))))
            return nodes
        elif _is(op, "BRANCH"):
            _, alternatives = av
            nodes[-1] = (op, (None, [_trim(list(alt)) for alt in alternatives]))
            return nodes
        else:
            return nodes
    return nodes


def _emit(nodes: Any, ignorecase: bool) -> tuple[str, bool]:
    """The pattern of a sequence, and whether it was cut short: then it is a prefix of the
    sequence, and whatever encloses it must end with it too."""
    parts: list[str] = []
    for op, av in nodes:
        text, cut = _emit_node(op, av, ignorecase)
        parts.append(text)
        if cut:
            return "".join(parts), True
    return "".join(parts), False


def _emit_node(op: Any, av: Any, ignorecase: bool) -> tuple[str, bool]:
    if _is(op, "BRANCH"):
        _, alternatives = av
        emitted = [_emit(alt, ignorecase) for alt in alternatives]
        return "(?:" + "|".join(text for text, _ in emitted) + ")", any(c for _, c in emitted)
    if _is(op, "SUBPATTERN"):
        _, add, delete, inner = av
        inner_case = (ignorecase or bool(add & _IGNORECASE)) and not delete & _IGNORECASE
        text, cut = _emit(inner, inner_case)
        return ("(?i:" if inner_case else "(?-i:") + text + ")", cut
    if _is(op, "MAX_REPEAT") or _is(op, "MIN_REPEAT"):
        low, high, item = av
        text, cut = _emit(item, ignorecase)
        body = "(?:" + text + ")"
        if cut:  # the item was cut short: one of it, and the sequence ends there
            return (body if low else ""), True
        if high != _MAXREPEAT and _matches_almost_anything(item):
            if high - low >= _WIDE:
                # `[\s\S]{1,300}` is slow to compile bounded, and opened every position after
                # one match would end another: the pattern ends with its shortest form
                floor = min(low, _FLOOR)
                return (f"{body}{{{floor}}}" if floor else ""), True
            return f"{body}{{{low},{high}}}", False
        if high == _MAXREPEAT or high - low >= _WIDE or low > _FLOOR:
            return f"{body}{{{min(low, _FLOOR)},}}", False
        if high == 0:
            return "", False
        return (f"{body}{{{low}}}" if low == high else f"{body}{{{low},{high}}}"), False
    return _emit_atom(op, av, ignorecase), False


def _emit_atom(op: Any, av: Any, ignorecase: bool) -> str:
    if _is(op, "LITERAL"):
        if ignorecase and chr(av) in "iksIKS":
            return _class(_cased({av}, ignorecase))
        if chr(av).isascii() and chr(av).isalpha():
            return chr(av)  # hyperscan's own case mode (the scope's `(?i:` / `(?-i:`) applies
        return _class(_cased({av}, ignorecase), single=True)
    if _is(op, "NOT_LITERAL"):
        return _class(_ALL - _cased({av}, ignorecase) | {_PLACEHOLDER})
    if _is(op, "ANY"):
        return _class(_ALL)
    if _is(op, "IN"):
        return _class(_set_of(av, ignorecase))
    if _is(op, "CATEGORY"):
        return _class(_category(av))
    if _is(op, "ASSERT") or _is(op, "ASSERT_NOT") or _is(op, "AT"):
        return ""
    raise ValueError(f"no gate for {op}")


def _matches_almost_anything(item: Any) -> bool:
    nodes = list(item)
    if len(nodes) != 1:
        return False
    op, av = nodes[0]
    if _is(op, "ANY") or _is(op, "NOT_LITERAL"):
        return True
    if _is(op, "IN"):
        try:
            return len(_set_of(av, ignorecase=False)) > 192
        except ValueError:
            return False
    return False


def _cased(chars: set[int], ignorecase: bool) -> frozenset[int]:
    found = set(chars)
    if any(c > 127 for c in found):
        raise ValueError("a character that is not ASCII")
    if ignorecase:
        letters = [c for c in found if chr(c).isalpha()]
        found.update(ord(chr(c).swapcase()) for c in letters)
        if any(chr(c) in "iksIKS" for c in letters):
            # the only ASCII letters with a case partner that is not ASCII: (?i)k matches the
            # Kelvin sign, s the long s, i the dotted and the dotless I
            found.add(_PLACEHOLDER)
    return frozenset(found)


def _category(name: Any) -> frozenset[int]:
    chars = _CATEGORIES.get(str(name))
    if chars is None:
        raise ValueError(f"no gate for {name}")
    return chars | {_PLACEHOLDER}


def _set_of(items: Any, ignorecase: bool) -> frozenset[int]:
    negate = False
    chars: set[int] = set()
    categories: set[int] = set()
    for op, av in items:
        if _is(op, "NEGATE"):
            negate = True
        elif _is(op, "LITERAL"):
            chars.add(av)
        elif _is(op, "RANGE"):
            low, high = av
            if high > 127:
                raise ValueError("a range past ASCII")
            chars.update(range(low, high + 1))
        elif _is(op, "CATEGORY"):
            categories.update(_CATEGORIES.get(str(av)) or _unknown(av))
        else:
            raise ValueError(f"no gate for {op} in a class")
    cased = _cased(chars, ignorecase) | categories
    # either way a character that is not ASCII may match: the placeholder does
    return (_ALL - cased if negate else cased) | {_PLACEHOLDER}


def _unknown(what: object) -> frozenset[int]:
    raise ValueError(f"no gate for {what!r}")


def _class(chars: frozenset[int], *, single: bool = False) -> str:
    """A hyperscan class (or one escaped byte) of exactly these bytes."""
    if not chars:
        raise ValueError("a class that matches nothing")
    ordered = sorted(chars)
    if single and len(ordered) == 1:
        return f"\\x{ordered[0]:02x}"
    parts: list[str] = []
    start = previous = ordered[0]
    for char in [*ordered[1:], -2]:
        if char == previous + 1:
            previous = char
            continue
        parts.append(
            f"\\x{start:02x}" if start == previous else f"\\x{start:02x}-\\x{previous:02x}"
        )
        start = previous = char
    return "[" + "".join(parts) + "]"
