"""What changed, in terms of risk: what a release declares and carries that its baseline did not.

Two halves. `ChangeFacts` (a scan check with no findings of its own) records, per artifact, what
these rules compare — `ScanContext.facts`, kept in the manifest (`Manifest.facts`) so the next
release is compared without the baseline's bytes. `ChangesCheck` (a comparison check) turns what is
new into findings:

- `dependency-added`: a dependency the baseline did not declare, or whose source became a git
  repository, a URL or a local path (npm `dependencies` / `optionalDependencies`; PyPI
  `Requires-Dist` of wheel METADATA and sdist PKG-INFO);
- `endpoint-added`: hosts named in code under a domain the baseline never named (tests, docs and
  well-known documentation hosts aside), listing them;
- `code-obfuscated`: newly added packed or obfuscated code (`eval(atob(…))`, `Function(` over a
  decoded string, `exec(base64…)`, long high-entropy blobs, `\\x`-escaped string tables);
- `binary-added`: a native executable or library (ELF, Mach-O, PE) the baseline did not carry;
- `install-hook-changed` (category install-hook): binding.gyp, or setup.py's side effects,
  changed although one existed before.

Each is medium (low where it is weak: an extra-only dependency, a host the release documents);
`raise_with_origin` makes the medium ones high when the release also carries an origin finding.
A baseline whose manifest has no facts (stored before they were kept) decides nothing: absence
of data is never change.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from watcher.model import (
    Category,
    Finding,
    Manifest,
    Member,
    MemberKind,
    Severity,
    stable_path,
)
from watcher.scanning.checks.base import (
    Check,
    ComparisonCheck,
    ScanContext,
    ScanOptions,
    TextDoc,
    line_of,
)
from watcher.scanning.checks.hooks import setup_py_side_effects
from watcher.scanning.checks.internal import doc_urls
from watcher.scanning.checks.locations import location_evidence, location_of

DEPENDENCY_ADDED = "dependency-added"
ENDPOINT_ADDED = "endpoint-added"
CODE_OBFUSCATED = "code-obfuscated"
BINARY_ADDED = "binary-added"
INSTALL_HOOK_CHANGED = "install-hook-changed"
CHANGE_RULES = frozenset(
    [DEPENDENCY_ADDED, ENDPOINT_ADDED, CODE_OBFUSCATED, BINARY_ADDED, INSTALL_HOOK_CHANGED]
)
# Findings that say a release did not come the way its owner's pipeline makes releases
# (category provenance): with one of them, what changed is far more likely to be hostile.
ORIGIN_RULES = frozenset(
    [
        "release-unapproved",
        "release-untagged",
        "publisher-unexpected",
        "provenance-identity-changed",
    ]
)

# fact kinds (Manifest.facts keys); every fact is tab-separated columns, the last a member path
DEPENDENCIES = "dependencies"
HOSTS = "hosts"
DOC_HOSTS = "doc-hosts"  # hosts the release names outside its code (README, docs, tests)
OBFUSCATION = "obfuscation"
BINARIES = "binaries"
SETUP_PY = "setup-py"

_MAX_HOSTS_PER_DOC = 200
_MAX_FINDINGS_PER_RULE = 20


def raise_with_origin(findings: Sequence[Finding]) -> list[Finding]:
    """Medium what-changed findings become high when the release also carries an origin finding;
    returns those raised (in place)."""
    origin = next((f for f in findings if f.rule in ORIGIN_RULES), None)
    if origin is None:
        return []
    raised = [f for f in findings if f.rule in CHANGE_RULES and f.severity is Severity.MEDIUM]
    for finding in raised:
        finding.severity = Severity.HIGH
        finding.evidence["raised_by"] = origin.rule
    return raised


def stable_facts(facts: dict[str, set[str]], version: str | None) -> dict[str, set[str]]:
    """The facts with the release's version out of their paths (the last column), as the
    manifest's file paths are."""
    return {
        kind: {_with_path(fact, stable_path(_path_of(fact), version)) for fact in values}
        for kind, values in facts.items()
    }


def merge_facts(parts: Iterable[dict[str, set[str]] | None]) -> dict[str, set[str]] | None:
    """One release's facts from its files' (None when no file's are known)."""
    merged: dict[str, set[str]] | None = None
    for facts in parts:
        if facts is None:
            continue
        merged = merged if merged is not None else {}
        for kind, values in facts.items():
            merged.setdefault(kind, set()).update(values)
    return merged


def _fact(*columns: object) -> str:
    return "\t".join(str(c).replace("\t", " ") for c in columns)


def _columns(fact: str) -> list[str]:
    return fact.split("\t")


def _path_of(fact: str) -> str:
    return fact.rsplit("\t", 1)[-1]


def _with_path(fact: str, path: str) -> str:
    head, sep, _ = fact.rpartition("\t")
    return f"{head}{sep}{path}"


# --------------------------------------------------------------------------- what a file says

_CODE_SUFFIXES = frozenset(
    [
        ".js",
        ".mjs",
        ".cjs",
        ".jsx",
        ".ts",
        ".tsx",
        ".mts",
        ".cts",
        ".py",
        ".pyw",
        ".sh",
        ".bash",
        ".ps1",
        ".bat",
        ".cmd",
        ".rb",
        ".php",
        ".pl",
        ".vbs",
    ]
)


def _is_code(path: str) -> bool:
    leaf = path.rsplit("/", 1)[-1].lower()
    if leaf.endswith((".d.ts", ".d.mts", ".d.cts", ".min.js.map")):
        return False
    return PurePosixPath(leaf).suffix in _CODE_SUFFIXES


# npm specs that do not come from the registry: `git+https://…`, `github:user/repo`,
# `user/repo`, `https://…/x.tgz`, `file:../x`, `link:`.
_NPM_GIT = re.compile(
    r"^(?:git(?:\+[a-z]+)?:|github:|gitlab:|bitbucket:|gist:|[\w.-]+/[\w.-]+(?:#.*)?$)"
)
_NPM_URL = re.compile(r"^https?://")
_NPM_PATH = re.compile(r"^(?:file:|link:|\.{0,2}/|~/)")


def npm_source(spec: str) -> str:
    """`registry`, `alias` (npm:other@…), `git`, `url` or `path`."""
    spec = spec.strip()
    if spec.startswith("npm:"):
        return "alias"
    if _NPM_URL.match(spec):
        return "url"
    if _NPM_PATH.match(spec):
        return "path"
    if _NPM_GIT.match(spec):
        return "git"
    return "registry"


def npm_dependencies(package_json: dict[str, Any], path: str) -> Iterator[str]:
    """Facts `name, source, detail, scope, spec, own, path`: `own` is 1 for a dependency under
    the package's own scope (`@scope/x` of `@scope/pkg`, `@pkg/x` of `pkg`): the same owner's."""
    own_name = package_json.get("name")
    owned = _own_scopes(own_name) if isinstance(own_name, str) else ()
    for field, scope in (("dependencies", "runtime"), ("optionalDependencies", "optional")):
        declared = package_json.get(field)
        if not isinstance(declared, dict):
            continue
        for name, spec in declared.items():
            if not isinstance(name, str) or not isinstance(spec, str):
                continue
            source = npm_source(spec)
            detail = spec.strip()[:300] if source != "registry" else ""
            own = int(name.startswith(owned)) if owned else 0
            yield _fact(name, source, detail, scope, spec.strip()[:100], own, path)


def _own_scopes(name: str) -> tuple[str, ...]:
    if name.startswith("@") and "/" in name:
        return (name.split("/", 1)[0] + "/",)
    return (f"@{name}/",)


def core_metadata_dependencies(data: bytes | bytearray, path: str) -> Iterator[str]:
    """`Requires-Dist` headers of a wheel's METADATA or an sdist's PKG-INFO."""
    for line in data[:1_000_000].decode("utf-8", "replace").splitlines():
        if not line:
            break  # the header block ends at the first blank line
        key, _, value = line.partition(":")
        if key.strip().lower() != "requires-dist":
            continue
        try:
            requirement = Requirement(value.strip())
        except InvalidRequirement:
            continue
        name = canonicalize_name(requirement.name)
        marker = str(requirement.marker) if requirement.marker is not None else ""
        scope = "extra" if "extra" in marker else "runtime"
        url = requirement.url or ""
        source = "registry"
        if url:
            source = (
                "git" if url.startswith("git+") else "path" if url.startswith("file:") else "url"
            )
        yield _fact(name, source, url[:300], scope, str(requirement.specifier)[:100], 0, path)


# Hosts every package names in comments, docs and schemas: documentation, standards bodies,
# examples, XML namespaces, the registries themselves.
_WELL_KNOWN_DOMAINS = frozenset(
    [
        "example.com",
        "example.org",
        "example.net",
        "w3.org",
        "schema.org",
        "json-schema.org",
        "purl.org",
        "xmlsoap.org",
        "github.com",
        "gitlab.com",
        "bitbucket.org",
        "npmjs.com",
        "npmjs.org",
        "nodejs.org",
        "pypi.org",
        "python.org",
        "readthedocs.io",
        "readthedocs.org",
        "mozilla.org",
        "stackoverflow.com",
        "stackexchange.com",
        "wikipedia.org",
        "tc39.es",
        "ecma-international.org",
        "whatwg.org",
        "ietf.org",
        "rfc-editor.org",
        "unicode.org",
        "opensource.org",
        "apache.org",
        "gnu.org",
        "creativecommons.org",
        "spdx.org",
        "semver.org",
        "mit-license.org",
        "microsoft.com",
        "apple.com",
        "google.com",
        "chromium.org",
        "webkit.org",
        "caniuse.com",
        "mdn.io",
        "jsperf.com",
        "jsfiddle.net",
        "codepen.io",
        "github.io",
        "githubassets.com",
        "shields.io",
        "travis-ci.org",
        "travis-ci.com",
        "opencollective.com",
        "tidelift.com",
        "sourceforge.net",
        "python-requests.org",
        "djangoproject.com",
        "palletsprojects.com",
        "sqlalchemy.org",
        "typescriptlang.org",
        "reactjs.org",
        "react.dev",
        "vuejs.org",
        "angular.io",
        "angular.dev",
        "webpack.js.org",
        "babeljs.io",
        "jquery.com",
        "lodash.com",
        "momentjs.com",
        "yarnpkg.com",
        "unpkg.com",
        "jsdelivr.net",
        "cdnjs.cloudflare.com",
        "goo.gl",
        "git.io",
        "bit.ly",
        "youtu.be",
        "youtube.com",
        "twitter.com",
        "x.com",
        "iana.org",
        "openid.net",
        "oasis-open.org",
        "openapis.org",
        "swagger.io",
        "jwt.io",
        "letsencrypt.org",
        "owasp.org",
        "cve.org",
        "mitre.org",
        "nist.gov",
    ]
)
# Reserved for documentation and tests (RFC 2606, 6761) and loopback names.
_RESERVED_TLDS = (".example", ".test", ".invalid", ".localhost", ".local", ".internal")
_HOSTNAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]")
_ENDPOINT_SCHEMES = ("http://", "https://", "ws://", "wss://")
_NAMESPACE = re.compile(r"/(?:ns|xmlns|namespaces?|schemas?|dtds?)(?:/|$|#)")
# second-level labels under which a country code's registrable domain has three labels
_SECOND_LEVELS = frozenset(["co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go"])


@lru_cache(maxsize=16384)
def domain_of(host: str) -> str:
    """The registrable domain, near enough: the last two labels, three under `co.uk` & co."""
    labels = host.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVELS:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def endpoint_host(url: str) -> str | None:
    """The host of an http(s)/ws(s) URL when it is a public name worth reporting, else None."""
    return _endpoint_host(url[:200])


@lru_cache(maxsize=16384)
def _endpoint_host(url: str) -> str | None:
    """Pure in its argument; bundles name the same few URLs thousands of times."""
    lowered = url.lower()
    if not lowered.startswith(_ENDPOINT_SCHEMES):
        return None
    rest = lowered.split("://", 1)[1]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1]
    if _NAMESPACE.search(rest[len(authority) :]) or authority.startswith("ns."):
        return None  # an XML namespace or schema identifier, never fetched
    host = authority.rsplit(":", 1)[0] if not authority.startswith("[") else ""
    host = host.rstrip(".")
    if not host or not _HOSTNAME.fullmatch(host) or len(host) > 253:
        return None
    if host == "localhost" or host.endswith(_RESERVED_TLDS):
        return None
    if domain_of(host) in _WELL_KNOWN_DOMAINS or host in _WELL_KNOWN_DOMAINS:
        return None
    return host


# Code that decodes a string and runs it.
_RUN_DECODED = re.compile(
    r"\beval\s*\(\s*(?:window\.|globalThis\.|self\.)?(?:atob|unescape|decodeURIComponent|"
    r"Buffer\.from|new\s+Buffer|String\.fromCharCode|require\(\s*['\"]zlib)"
    r"|\bFunction\s*\(\s*(?:['\"][\w$]*['\"]\s*,\s*)*(?:window\.|globalThis\.)?(?:atob|unescape|"
    r"decodeURIComponent|Buffer\.from|String\.fromCharCode)\s*\("
    r"|\beval\s*\(\s*function\s*\(\s*p\s*,\s*a\s*,\s*c\s*,\s*k\s*,\s*e\s*,"  # Dean Edwards' packer
    r"|\b(?:exec|eval)\s*\(\s*(?:compile\s*\(\s*)?(?:base64\.\w*decode|b64decode|zlib\.decompress|"
    r"marshal\.loads|codecs\.decode|bytes\.fromhex|__import__\(\s*['\"](?:base64|zlib|marshal|codecs))"
)
# every alternative of _RUN_DECODED starts at one of these words
_RUN_WORDS = ("eval", "Function", "exec")
_HEX_LITERAL = re.compile(r"(['\"])(?:\\x[0-9a-fA-F]{2}){4,}\1")
_OBFUSCATOR_NAME = re.compile(r"\b_0x[0-9a-f]{4,6}\b")
_MIN_HEX_LITERALS = 20
_MIN_OBFUSCATOR_NAMES = 30
_BLOB_MIN = 4096
_BLOB = re.compile(rf"[A-Za-z0-9+/=_-]{{{_BLOB_MIN},}}")
_HEX_BLOB = re.compile(rf"[0-9a-fA-F]{{{_BLOB_MIN},}}")
_BLOB_PUNCTUATION = " ;(){},.\"'"
# `data:…;base64,` (an inlined asset) and WebAssembly ("\0asm" is `AGFzbQ` in base64)
_BLOB_ALLOWED_BEFORE = ("base64,", "base64:")
_WASM_BASE64 = "AGFzbQ"


def _entropy(text: str) -> float:
    counts = Counter(text)
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def _first_decoded_run(text: str) -> re.Match[str] | None:
    """`_RUN_DECODED.search(text)`, found faster: the regex is tried only where one of its
    starting words stands (str.find, in C), not at every offset of a large bundle, where its
    alternation made the search cost more than the rest of the scan."""
    first: re.Match[str] | None = None
    for word in _RUN_WORDS:
        start = text.find(word)
        while start != -1 and (first is None or start < first.start()):
            match = _RUN_DECODED.match(text, start)
            if match:
                first = match
                break
            start = text.find(word, start + 1)
    return first


def obfuscation_signals(doc: TextDoc) -> Iterator[tuple[str, int, str]]:
    """(kind, offset, detail) of each kind of obfuscation in a code text, once per kind."""
    text = doc.text
    # plain `in` / `count` (C, no needle hits to collect): most code never matches
    match = _first_decoded_run(text)
    if match:
        yield "runs-decoded-string", match.start(), match.group(0)[:80]
    escapes = text.count("\\x")
    if escapes >= 4 * _MIN_HEX_LITERALS:
        literals = sum(
            1 for _ in zip(range(_MIN_HEX_LITERALS), _HEX_LITERAL.finditer(text), strict=False)
        )
        if literals >= _MIN_HEX_LITERALS:
            first = _HEX_LITERAL.search(text)
            yield (
                "escaped-string-table",
                first.start() if first else 0,
                f"{literals}+ \\x-escaped strings",
            )
    names = text.count("_0x")
    if names >= _MIN_OBFUSCATOR_NAMES:
        distinct = set(_OBFUSCATOR_NAME.findall(text))
        if len(distinct) >= _MIN_OBFUSCATOR_NAMES:
            first = _OBFUSCATOR_NAME.search(text)
            yield (
                "obfuscator-identifiers",
                first.start() if first else 0,
                f"{len(distinct)} _0x… names",
            )
    blob = _packed_blob(text)
    if blob is not None:
        yield "high-entropy-blob", blob[0], blob[1]


def _mostly_one_token(line: str, length: int) -> bool:
    """Under 5 % punctuation; counted one character at a time, stopping once past it (minified
    code is past it after its first one)."""
    punctuation = 0
    for char in _BLOB_PUNCTUATION:
        punctuation += line.count(char)
        if punctuation * 20 >= length:
            return False
    return True


def _packed_blob(text: str) -> tuple[int, str] | None:
    """A very long run of base64 / hex of high entropy on a line with almost no punctuation."""
    if len(text) < _BLOB_MIN:
        return None
    offset = 0
    for line in text.split("\n"):
        length = len(line)
        if length >= _BLOB_MIN and _mostly_one_token(line, length):
            for pattern, floor in ((_HEX_BLOB, 3.8), (_BLOB, 5.5)):
                for match in pattern.finditer(line):
                    before = line[max(0, match.start() - 12) : match.start()]
                    run = match.group(0)
                    if before.endswith(_BLOB_ALLOWED_BEFORE) or run.startswith(_WASM_BASE64):
                        continue
                    entropy = _entropy(run[:65536])
                    if entropy >= floor:
                        return (
                            offset + match.start(),
                            f"{len(run):,} characters of entropy {entropy:.1f} bits",
                        )
        offset += length + 1
    return None


_COMMENT_STARTS = ("*", "//", "/*", "#", "<!--")


def _in_comment_line(text: str, offset: int) -> bool:
    """Whether the line holding `offset` starts as a comment (looked at within 200 characters
    before it: a minified line is code)."""
    start = text.rfind("\n", max(0, offset - 200), offset) + 1
    if start == 0 and offset > 200:
        return False
    return text[start:offset].lstrip().startswith(_COMMENT_STARTS)


def binary_format(data: bytes | bytearray) -> str | None:
    """ELF, Mach-O or PE by their magic bytes."""
    head = bytes(data[:64])
    if head[:4] == b"\x7fELF":
        return "ELF"
    if head[:4] in (
        b"\xfe\xed\xfa\xce",
        b"\xfe\xed\xfa\xcf",
        b"\xce\xfa\xed\xfe",
        b"\xcf\xfa\xed\xfe",
    ):
        return "Mach-O"
    if head[:4] == b"\xca\xfe\xba\xbe" and int.from_bytes(head[4:8], "big") < 45:
        return "Mach-O"  # a fat binary (a Java class has its version, 45 and up, there)
    if head[:2] == b"MZ" and len(data) > 0x40:
        pe = int.from_bytes(bytes(data[0x3C:0x40]), "little")
        if 0 < pe < len(data) - 4 and bytes(data[pe : pe + 4]) == b"PE\0\0":
            return "PE"
    return None


_ABI_TAGS = re.compile(
    r"\.(?:cpython|pypy)[-\w]*?(?=\.(?:so|pyd|dylib)$)|\.cp3\d+-win[\w]*(?=\.pyd$)|\.abi3t?(?=\.so$)"
)
_HASHED = re.compile(r"(?<=[.-])(?=[\w]*\d)(?=[\w]*[A-Za-z])[A-Za-z0-9_]{8,}(?=\.)")


_ARTIFACT_PREFIX = re.compile(r"^[^/]+\.(?:whl|tar\.gz|tgz|zip|tar\.bz2|tar\.xz|tar)/")


def comparable_path(path: str) -> str:
    """A path as the next release will likely spell the same file: the release file it came
    from (a wheel per Python version), the Python ABI tags of extension modules and content
    hashes of bundler chunks and vendored libraries out."""
    return _HASHED.sub("*", _ABI_TAGS.sub("", _ARTIFACT_PREFIX.sub("", path)))


class ChangeFacts(Check):
    """Records what the what-changed rules compare (`ScanContext.facts`); reports nothing."""

    category = Category.UNEXPECTED_CONTENT

    def member(self, member: Member, ctx: ScanContext) -> Iterable[Finding]:
        if member.kind is not MemberKind.FILE or member.data is None:
            return ()
        path = member.path
        if "!" in path:
            return ()  # inside a nested archive: the nested-package finding speaks for it
        facts = ctx.facts
        parts = path.split("/")
        if len(parts) == 2 and parts[1] == "package.json" and ctx.package_json is not None:
            facts.setdefault(DEPENDENCIES, set()).update(npm_dependencies(ctx.package_json, path))
        elif len(parts) == 2 and parts[1] in ("METADATA", "PKG-INFO"):
            facts.setdefault(DEPENDENCIES, set()).update(
                core_metadata_dependencies(member.data, path)
            )
        kind = binary_format(member.data)
        if kind is not None:
            digest = hashlib.sha256(member.data).hexdigest()
            facts.setdefault(BINARIES, set()).add(_fact(kind, digest, path))
        return ()

    def text(self, doc: TextDoc, ctx: ScanContext) -> Iterable[Finding]:
        if doc.embedded_source is not None or "!" in doc.path or doc.origin == "binary-strings":
            return ()
        facts = ctx.facts
        path = doc.path
        if path.endswith("/setup.py") and path.count("/") == 1:
            lines = setup_py_side_effects(doc.text)
            if lines:
                digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
                facts.setdefault(SETUP_PY, set()).add(_fact(digest, path))
        code = _is_code(path) and location_of(path) is None
        hosts = facts.setdefault(HOSTS if code else DOC_HOSTS, set())
        documented = facts.setdefault(DOC_HOSTS, set())
        seen: set[str] = set()
        for offset, url in doc_urls(doc):
            host = endpoint_host(url)
            if host is None or host in seen:
                continue
            seen.add(host)
            # a link in a comment (`* @see https://…`, `// https://…`) documents, it is not called
            comment = code and _in_comment_line(doc.text, offset)
            (documented if comment else hosts).add(_fact(host, path))
            if len(seen) >= _MAX_HOSTS_PER_DOC:
                break
        if _is_code(path):
            for kind, offset, detail in obfuscation_signals(doc):
                line = line_of(doc.text, offset)
                facts.setdefault(OBFUSCATION, set()).add(_fact(kind, line, detail, path))
        return ()


# ------------------------------------------------------------------------------- the comparison


class ChangesCheck(ComparisonCheck):
    category = Category.UNEXPECTED_CONTENT

    def compare(self, target: Manifest, baseline: Manifest, options: ScanOptions) -> list[Finding]:
        if target.facts is None or baseline.facts is None:
            return []
        now, before = target.facts, baseline.facts
        return [
            *_dependencies(now.get(DEPENDENCIES, set()), before.get(DEPENDENCIES, set())),
            *_endpoints(now, before),
            *_obfuscation(
                now.get(OBFUSCATION, set()), before.get(OBFUSCATION, set()), target, baseline
            ),
            *_binaries(now.get(BINARIES, set()), before.get(BINARIES, set()), baseline),
            *_install_hooks(
                now.get(SETUP_PY, set()), before.get(SETUP_PY, set()), target, baseline
            ),
        ]


def _finding(
    rule: str,
    severity: Severity,
    path: str,
    message: str,
    *,
    key: str,
    evidence: dict[str, Any],
    category: Category = Category.UNEXPECTED_CONTENT,
    line: int | None = None,
) -> Finding:
    return Finding(
        rule=rule,
        category=category,
        severity=severity,
        path=path,
        message=message,
        line=line,
        key=key,
        evidence=evidence,
    )


def _dependencies(now: set[str], before: set[str]) -> Iterator[Finding]:
    """One finding for what is new and risky (medium), one for what is new and weak (low: an
    extra-only PyPI dependency, or one under the package's own npm scope)."""
    declared: dict[str, list[list[str]]] = defaultdict(list)
    for fact in before:
        cols = _columns(fact)
        declared[cols[0]].append(cols)
    changes: dict[str, tuple[bool, str, dict[str, str], str]] = {}  # name → (weak, …)
    for fact in sorted(now):
        name, source, detail, scope, spec, own, path = _columns(fact)
        if name in changes:
            continue
        earlier = declared.get(name)
        item = {"dependency": name, "spec": spec, "source": source, "scope": scope}
        if detail:
            item["url"] = detail
        if earlier is None:
            weak = source == "registry" and (scope == "extra" or own == "1")
            where = "" if source == "registry" else f" from {source} {detail}"
            changes[name] = (weak, f"{name} {spec}".rstrip() + where, item, path)
        elif source != "registry" and not any(
            cols[1] == source and cols[2] == detail for cols in earlier
        ):
            item["previous_source"] = earlier[0][1]
            changes[name] = (False, f"{name} now from {source} {detail}", item, path)
    for weak in (False, True):
        picked = [(text, item, path) for w, text, item, path in changes.values() if w is weak]
        if not picked:
            continue
        names = [item["dependency"] for _, item, _ in picked]
        what = "dependency change(s)" if not weak else "dependency change(s) of low risk"
        detail_text = "; ".join(text for text, _, _ in picked[:10])
        more = f" and {len(picked) - 10} more" if len(picked) > 10 else ""
        yield _finding(
            DEPENDENCY_ADDED,
            Severity.LOW if weak else Severity.MEDIUM,
            picked[0][2],
            f"{len(picked)} new {what}: {detail_text}{more}"
            + (" (extra-only, or under the package's own scope)" if weak else ""),
            key=",".join(sorted(names)),
            evidence={"dependencies": [item for _, item, _ in picked[:50]], "count": len(picked)},
        )


def _endpoints(now: dict[str, set[str]], before: dict[str, set[str]]) -> Iterator[Finding]:
    known = {
        domain_of(_columns(fact)[0])
        for kind in (HOSTS, DOC_HOSTS)
        for fact in before.get(kind, set())
    }
    documented = {domain_of(_columns(fact)[0]) for fact in now.get(DOC_HOSTS, set())}
    new_by_domain: dict[str, dict[str, str]] = defaultdict(dict)  # domain → host → first path
    for fact in sorted(now.get(HOSTS, set())):
        host, path = _columns(fact)
        domain = domain_of(host)
        if domain not in known:
            new_by_domain[domain].setdefault(host, path)
    if not new_by_domain:
        return
    hosts = sorted(host for found in new_by_domain.values() for host in found)
    undocumented = sorted(d for d in new_by_domain if d not in documented)
    paths = sorted({p for found in new_by_domain.values() for p in found.values()})
    yield _finding(
        ENDPOINT_ADDED,
        Severity.MEDIUM if undocumented else Severity.LOW,
        paths[0],
        f"code names {len(hosts)} new host(s): {', '.join(hosts[:10])}"
        + (f" and {len(hosts) - 10} more" if len(hosts) > 10 else "")
        + ("" if undocumented else " (all named in the release's docs too)"),
        key=",".join(sorted(new_by_domain)),
        evidence={
            "hosts": hosts[:50],
            "domains": sorted(new_by_domain),
            "undocumented_domains": undocumented,
            "files": paths[:10],
        },
    )


def _obfuscation(
    now: set[str], before: set[str], target: Manifest, baseline: Manifest
) -> Iterator[Finding]:
    known = {(cols[0], comparable_path(cols[3])) for cols in map(_columns, before)}
    baseline_digests = {entry.sha256 for entry in baseline.files.values()}
    count = 0
    for fact in sorted(now):
        kind, line, detail, path = _columns(fact)
        if (kind, comparable_path(path)) in known:
            continue
        entry = target.files.get(path)
        if entry is not None and entry.sha256 in baseline_digests:
            continue  # the same file, moved
        location = location_of(path)
        yield _finding(
            CODE_OBFUSCATED,
            Severity.LOW if location is not None else Severity.MEDIUM,
            path,
            f"newly added obfuscated or packed code ({kind.replace('-', ' ')}: {detail})",
            key=kind,
            line=int(line) if line.isdigit() else None,
            evidence={"kind": kind, "detail": detail} | location_evidence(location),
        )
        count += 1
        if count >= _MAX_FINDINGS_PER_RULE:
            return


def _binaries(now: set[str], before: set[str], baseline: Manifest) -> Iterator[Finding]:
    known_paths = {comparable_path(_path_of(fact)) for fact in before}
    known_digests = {_columns(fact)[1] for fact in before}
    known_digests.update(entry.sha256 for entry in baseline.files.values())
    new = [
        cols
        for cols in map(_columns, sorted(now))
        if comparable_path(cols[2]) not in known_paths and cols[1] not in known_digests
    ]
    for kind, digest, path in new[:_MAX_FINDINGS_PER_RULE]:
        yield _finding(
            BINARY_ADDED,
            Severity.MEDIUM,
            path,
            f"new native binary ({kind}) the previous release did not ship",
            key=comparable_path(path),
            evidence={"format": kind, "sha256": digest},
        )


def _install_hooks(
    now: set[str], before: set[str], target: Manifest, baseline: Manifest
) -> Iterator[Finding]:
    for path, entry in sorted(target.files.items()):
        if path.endswith("/binding.gyp") and path.count("/") == 1:
            old = baseline.files.get(path)
            if old is not None and old.sha256 != entry.sha256:
                yield _finding(
                    INSTALL_HOOK_CHANGED,
                    Severity.MEDIUM,
                    path,
                    "binding.gyp changed: npm runs `node-gyp rebuild` with it at install",
                    key="binding.gyp",
                    evidence={"sha256": entry.sha256, "previous_sha256": old.sha256},
                    category=Category.INSTALL_HOOK,
                )
    earlier = {_path_of(fact): _columns(fact)[0] for fact in before}
    for fact in sorted(now):
        digest, path = _columns(fact)
        previous = earlier.get(path)
        if previous is not None and previous != digest:
            yield _finding(
                INSTALL_HOOK_CHANGED,
                Severity.MEDIUM,
                path,
                "setup.py's network or process calls changed since the previous release",
                key="setup.py",
                evidence={"side_effects_digest": digest, "previous_digest": previous},
                category=Category.INSTALL_HOOK,
            )
