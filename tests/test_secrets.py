"""The `secret` check: table-driven from secrets.toml and the builders in fakecreds.py.

Every credential here is built at test time (see fakecreds.py); no test text holds a complete
real-looking secret literally.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import string
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import fakecreds
from fakecreds import POSITIVES, Positive

from watcher.model import Category, Finding, Severity
from watcher.scanning.checks.base import ScanContext, TextDoc
from watcher.scanning.checks.secrets import (
    RULES_FILE,
    SecretCheck,
    default_rules,
    load_rules,
    redacted_form,
    shannon_entropy,
)
from watcher.scanning.scan import ScanRequest, scan_artifact

RULES = {rule.id: rule for rule in default_rules().rules}
CTX = ScanContext(ecosystem=None, name="acme-pkg", version="1.0.0")


def scan_text(text: str, path: str = "package/dist/index.js") -> list[Finding]:
    doc = TextDoc(path=path, text=text, member_path=path.split(" → ", maxsplit=1)[0])
    return list(SecretCheck().text(doc, CTX))


def positive(rule_id: str, seed: str = "") -> Positive:
    return POSITIVES[rule_id](random.Random(rule_id + seed))


def assert_no_leak(finding: Finding, secret: str) -> None:
    """The raw value appears nowhere in what a finding carries or prints."""
    for rendering in (
        str(finding),
        repr(finding),
        finding.message,
        finding.key,
        json.dumps(finding.evidence, ensure_ascii=False),
    ):
        assert secret not in rendering
    # nor does any 12-character stretch of it (a truncated value is still a leak), past the
    # four characters redact() shows
    for i in range(4, len(secret) - 12, 6):
        assert secret[i : i + 12] not in repr(finding) + json.dumps(finding.evidence)


# -- the rule set --------------------------------------------------------------------------------


def test_every_rule_has_a_positive_builder_and_vice_versa() -> None:
    assert set(RULES) == set(POSITIVES)


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_is_complete(rule_id: str) -> None:
    rule = RULES[rule_id]
    assert rule.keywords, "a rule without keywords would make the scan run its regex everywhere"
    assert rule.description and rule.revoke
    # the runbook hint names the provider's route, never a host
    assert "://" not in rule.revoke
    assert not re.search(r"\b[\w-]+\.(?:com|org|io|net|dev)\b", rule.revoke)


def test_generic_rules_come_last_so_specific_rules_win_overlaps() -> None:
    ids = [rule.id for rule in default_rules().rules]
    assert ids[-2:] == ["generic-secret", "generic-secret-unquoted"]
    assert ids.index("gcp-service-account-key") < ids.index("private-key")
    assert ids.index("private-key-encrypted") < ids.index("private-key")


# -- positives -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule_id", sorted(POSITIVES))
def test_positive_is_found_once_redacted(rule_id: str) -> None:
    case = positive(rule_id)
    findings = scan_text(case.text, case.path)
    assert [f.rule for f in findings] == [rule_id]
    finding = findings[0]
    rule = RULES[rule_id]
    assert finding.category is Category.SECRET
    assert finding.severity is rule.severity
    assert finding.path == case.path
    assert finding.key == redacted_form(case.secret)
    assert finding.evidence["redacted"] == redacted_form(case.secret)
    assert finding.evidence["rule_description"] == rule.description
    assert finding.evidence["revoke"] == rule.revoke
    assert redacted_form(case.secret) in finding.message
    assert finding.line == case.text.count("\n", 0, case.text.index(case.secret)) + 1
    assert_no_leak(finding, case.secret)


@pytest.mark.parametrize("rule_id", sorted(POSITIVES))
def test_positive_is_found_inside_a_large_minified_bundle(rule_id: str) -> None:
    """The keyword windows find a credential wherever it sits, among many decoy keyword hits."""
    case = positive(rule_id, "-bundle")
    rng = random.Random(rule_id)
    filler = "".join(
        rng.choice(["function(e){return e.token}", "var a=b.secret||c;", "n.apiKey=t;", "x://y"])
        for _ in range(20_000)
    )
    text = filler + ";\n" + case.text + "\n" + filler
    findings = scan_text(text, case.path)
    assert [f.rule for f in findings] == [rule_id]
    assert findings[0].key == redacted_form(case.secret)
    assert findings[0].line == 2 + case.text.count("\n", 0, case.text.index(case.secret))


def test_severities_follow_what_the_credential_can_do() -> None:
    assert RULES["stripe-live-secret-key"].severity is Severity.CRITICAL
    assert RULES["stripe-test-secret-key"].severity is Severity.LOW
    assert RULES["github-token"].severity is Severity.CRITICAL
    assert RULES["generic-secret"].severity is Severity.MEDIUM


@pytest.mark.parametrize("kind", ["p", "o", "u", "s", "r"])
def test_every_github_classic_prefix(kind: str) -> None:
    token = fakecreds.github_token(random.Random(kind), kind)
    findings = scan_text(f'auth("{token}")')
    assert [(f.rule, f.key) for f in findings] == [("github-token", redacted_form(token))]
    assert findings[0].evidence["checksum_valid"] is True


def test_openai_legacy_format() -> None:
    key = fakecreds.openai_legacy_key(random.Random(1))
    assert [f.rule for f in scan_text(f'OPENAI="{key}"')] == ["openai-api-key"]


def test_openssh_private_key() -> None:
    text, body = fakecreds.openssh_private_key(random.Random(2))
    findings = scan_text(text, "package/id_ed25519")
    assert [(f.rule, f.key) for f in findings] == [("private-key", redacted_form(body))]


def test_a_short_placeholder_word_inside_a_long_key_body_is_chance_not_a_placeholder() -> None:
    text, body = fakecreds.pem_private_key(random.Random(11))
    text = text.replace(body[40:44], "fAkE", 1)
    body = body.replace(body[40:44], "fAkE", 1)
    assert [(f.rule, f.key) for f in scan_text(text)] == [("private-key", redacted_form(body))]


def test_private_key_in_a_js_string_with_escaped_newlines() -> None:
    rng = random.Random(3)
    body = fakecreds.pem_body(rng, escaped=True)
    label = "EC PRIVATE KEY"
    text = f'const key = "{fakecreds.BEGIN}{label}-----\\n{body}\\n{fakecreds.END}{label}-----";'
    assert [f.rule for f in scan_text(text)] == ["private-key"]


def test_aws_key_id_with_unlabelled_secret_beside_it() -> None:
    rng = random.Random(4)
    key_id = "AK" + "IA" + fakecreds.chars(rng, fakecreds.BASE32, 16)
    secret = fakecreds.chars(rng, fakecreds.B64, 40)
    findings = scan_text(f'new Credentials("{key_id}", "{secret}")')
    assert sorted((f.rule, f.key) for f in findings) == [
        ("aws-access-key-id", redacted_form(key_id)),
        ("aws-secret-access-key", redacted_form(secret)),
    ]


@pytest.mark.parametrize(
    "template",
    [
        'PASSWORD: "{v}"',
        "Password='{v}'",
        '"db_password": "{v}"',
        'API_KEY = "{v}"',
        'apiKey: "{v}"',
        'this.secret = "{v}"',
        'client_secret => "{v}"',
    ],
)
def test_generic_assignments_in_any_case(template: str) -> None:
    value = fakecreds.chars(random.Random(template), fakecreds.ALNUM, 16) + "7a"
    findings = scan_text(template.format(v=value))
    assert [(f.rule, f.key) for f in findings] == [("generic-secret", redacted_form(value))]


def test_findings_report_the_original_source_inside_a_source_map() -> None:
    case = positive("stripe-live-secret-key")
    path = "package/dist/app.js.map → webpack://acme/./src/billing.ts"
    findings = scan_text(case.text, path)
    assert [f.path for f in findings] == [path]


def test_line_numbers_count_from_one() -> None:
    token = fakecreds.github_token(random.Random(5))
    text = "a\nb\n\nconst t = '" + token + "';\n"
    assert [f.line for f in scan_text(text)] == [4]


def test_repeated_matches_are_capped_and_counted() -> None:
    rng = random.Random(6)
    tokens = [fakecreds.github_token(rng) for _ in range(60)]
    findings = scan_text("\n".join(f'"{t}",' for t in tokens))
    assert len(findings) == 50
    assert findings[-1].evidence["matches_not_reported"] == 10


# -- negatives -----------------------------------------------------------------------------------


def _negatives() -> dict[str, str]:
    rng = random.Random(7)
    b64 = fakecreds.B64
    aws_id = "AKIA" + "IOSFODNN7" + "EXAMPLE"
    aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
    bad_github = fakecreds.github_token(rng, valid=False)
    bad_npm = fakecreds.npm_token(rng, valid=False)
    sha1 = hashlib.sha1(b"a").hexdigest()
    sha256 = hashlib.sha256(b"a").hexdigest()
    integrity = "sha512-" + base64.b64encode(rng.randbytes(64)).decode()
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + rng.randbytes(6000)).decode()
    ssh_pub = "ssh-ed25519 " + base64.b64encode(rng.randbytes(51)).decode() + " dev@laptop"
    return {
        "aws documented example pair": (
            f"[default]\naws_access_key_id = {aws_id}\naws_secret_access_key = {aws_secret}\n"
        ),
        "aws example key id in code": f'const id = "{aws_id}";',
        "stripe documented test key 1": 'Stripe("'
        + "sk_"
        + "test_"
        + "4eC39HqLyjWDarjtT1zdp7dc"
        + '")',
        "stripe documented test key 2": 'Stripe("'
        + "sk_"
        + "test_"
        + "BQokikJOvBiI2HlWgH4olfQ2"
        + '")',
        "stripe documented test key 3": 'Stripe("'
        + "sk_"
        + "test_"
        + "26PHem9AhJZvU623DfE1x4sd"
        + '")',
        "placeholder your_token_here": 'const token = "your_token_here";',
        "placeholder angle brackets": 'api_key = "<your-api-key>"',
        "placeholder template var": 'secret: "${SECRET_VALUE}"',
        "placeholder mustache": 'password: "{{ .Values.dbPassword }}"',
        "placeholder process.env": "const token = process.env.NPM_TOKEN;",
        "placeholder changeme": 'password = "changeme123"',
        "placeholder dummy": 'secret = "dummy-secret-value-1"',
        "placeholder xxxx": 'token: "xxxxxxxxxxxxxxxxxxxx"',
        "placeholder zeros": 'apiKey: "00000000000000000000"',
        "aws id of X": "AK" + "IA" + "X" * 16,
        "stripe live zeros": "sk_" + "live_" + "0" * 24,
        "github repeated chars": "gh" + "p_" + "a" * 36,
        "stripe live sequence": "sk_" + "live_" + "1234567890abcdefghijklmn",
        "github wrong checksum": f'auth("{bad_github}")',
        "npm wrong checksum": f'_token = "{bad_npm}"',
        "pypi-like string that is no macaroon": "pypi-"
        + "AgE"
        + fakecreds.chars(rng, fakecreds.ALNUM, 80),
        "public certificate": fakecreds.certificate(rng),
        "public key": fakecreds.public_key(rng),
        "ssh public key": ssh_pub,
        "pem with elided body": (
            f"{fakecreds.BEGIN}RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA...\n"
            f"{fakecreds.END}RSA PRIVATE KEY-----"
        ),
        "pem with filler body": (
            f"{fakecreds.BEGIN}PRIVATE KEY-----\n" + "X" * 64 + "\n" + "X" * 64 + "\n"
            f"{fakecreds.END}PRIVATE KEY-----"
        ),
        "hashes": f'{{"shasum": "{sha1}", "sha256": "{sha256}", "commit": "{sha1}"}}',
        "git lfs pointer": f"version https://git-lfs.github.invalid/spec/v1\noid sha256:{sha256}\nsize 12\n",
        "uuids": f'{{"requestId": "{uuid.UUID(int=rng.getrandbits(128))}", "id": "{uuid.uuid4()}"}}',
        "lockfile integrity": f'"node_modules/x": {{"version": "1.0.0", "integrity": "{integrity}"}}',
        "data uri image": f".logo{{background:url(data:image/png;base64,{png})}}",
        "random base64 blob": base64.b64encode(rng.randbytes(20000)).decode(),
        "url with placeholder password": "postgres://user:password@db.acme-corp.io/app",
        "url on localhost": "redis://admin:Sup3rS3cretValue@localhost:6379/0",
        "url on example host": "https://deploy:Zq8vLw2Kp4@git.example.com/repo.git",
        "url with template vars": "https://${GIT_USER}:${GIT_PASS}@git.acme-corp.io/repo.git",
        "url with angle placeholders": "mongodb+srv://<user>:<password>@cluster0.acme-corp.io/db",
        "url with port only": "https://registry.acme-corp.io:8443/path?a=b",
        "url git ssh": "git+ssh://git@git.acme-corp.io:acme/repo.git",
        "url with several hosts": "https://foo.acme-corp.io:123,foo:bar@bar.acme-corp.io/path",
        "oauth rfc example tokens": (
            '{"access_token":"' + "2YotnFZFEjr1" + "zCsicMWpAA" + '",'
            '"refresh_token":"' + "tGzv3JOkF0XG" + "5Qx2TlKWIA" + '"}'
        ),
        "sourcemap webpack urls": '{"sources":["webpack:///./src/a.ts","webpack://acme/./b.js"]}',
        "code references": (
            "const token = getToken(); this.password = opts.password; "
            'const t = { token: accessToken, secret: config.auth.secret, tokenType: "Bearer" }; '
            'input.autocomplete = "new-password"; const PASSWORD_FIELD = "passwordConfirmation";'
        ),
        "generic low entropy": 'password = "aaaabbbb"',
        "generic word value": 'token_kind: "refreshTokenRotation"',
        "generic mime": 'tokenContentType: "application/x-www-form-urlencoded"',
        "generic file name": 'secretFile: "config/secrets.production.json"',
        "comparisons are not assignments": 'if (token === "Bearer12345678") {}',
        "unquoted generic outside config files": "password = hunter2Hunter2x9",
        "twilio sid without token": "const accountSid = 'A" + "C" + "0123456789abcdef" * 2 + "';",
        "token-ish words": "tokenizer tokens secretary passwordless api_keys apikeyring",
        "azure-looking text without key": "AccountKey=short;",
        "google key too short": 'key: "' + "AI" + "za" + "SyShort" + '"',
        "slack docs style": "xo" + "xb-" + "not-a-real-token",
        "base64 text": base64.b64encode(b"".join(rng.randbytes(30) for _ in range(300))).decode(),
        "b64 json in sourcemap mappings": '{"mappings":"' + fakecreds.chars(rng, b64, 4000) + '"}',
        # -- shapes met in popular packages (docs/precision.md) --
        "oracle demo account in a connection string": (
            'create_engine("oracle+oracledb://scott:' + "tig" + 'er@oracle18c/xe")'
        ),
        "connection string on a placeholder host": (
            'make_url("dbtype://username:'
            + fakecreds.chars(rng, fakecreds.ALNUM, 10)
            + '@hostspec/db")'
        ),
        "documented url with a 1234 key": (
            '"Must be in valid uri format like dotenv://:key_'
            + "1234"
            + '@vault.acme-corp.io/vault"'
        ),
        "npm auth token member assigned in code": "this._auth" + "Token = data.accessToken;",
        "pagination and idempotency tokens": json.dumps(
            {
                "NextToken": fakecreds.chars(rng, b64, 44) + "==",
                "NextContinuationToken": fakecreds.chars(rng, b64, 52) + "==",
                "ClientRequestToken": str(uuid.UUID(int=rng.getrandbits(128))),
                "clientToken": fakecreds.chars(rng, fakecreds.ALNUM, 18),
                "LifecycleActionToken": str(uuid.UUID(int=rng.getrandbits(128))),
            }
        ),
        "dotnet public key token": '<assemblyIdentity publicKeyToken="'
        + fakecreds.chars(rng, fakecreds.HEX, 16)
        + '"/>',
        "urn token types": 'SUBJECT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"\n'
        'x = {"subject_token_type": "urn:ietf:params:aws:token-type:aws4_request"}',
        "arn under a secret key name": '"SecretsManagerSecretId": "arn:aws:secretsmanager:'
        + "us-east-1:"
        + fakecreds.chars(rng, "0123456789", 12)
        + ":secret:"
        + fakecreds.chars(rng, fakecreds.ALNUM, 12)
        + '"',
        "tokenizer state references": (
            '[/<\\/script\\s*>/, { token: "@rematch", next: "@pop" }],'
            '{"$S2==interpolation": { token: "@brackets.interpolation", next: "@popall" }}'
        ),
        "password hashes": (
            'password: "$6$rounds=656000$'
            + fakecreds.chars(rng, fakecreds.ALNUM, 16)
            + "$"
            + fakecreds.chars(rng, fakecreds.ALNUM + "./", 86)
            + '"\n"password": "pbkdf2_sha256$260000$'
            + fakecreds.chars(rng, fakecreds.ALNUM, 12)
            + "$"
            + fakecreds.chars(rng, b64, 43)
            + '="'
        ),
        "timestamp under a password key": '"PasswordLastUsed": "2016-09-08T21:47:36Z"',
        "identifiers naming a token": (
            "export const EXCHANGE_TOKEN_METHOD = 'exchangeRecaptchaV3Token';"
            'StaticCredentials(token="token123")'
        ),
        "key names that describe a credential": (
            '"SecretId": "MyTestDatabase' + "Secret1" + '", token_url: "sts/v1/' + "x9Kp2" + '"'
        ),
        "minified messages across string boundaries": (
            'DefaultRestParameter:"Unexpected token =",DuplicateBinding:"Duplicate binding %0"'
        ),
    }


NEGATIVES = _negatives()


@pytest.mark.parametrize("name", sorted(NEGATIVES))
def test_negative_has_no_finding(name: str) -> None:
    findings = scan_text(NEGATIVES[name])
    assert [(f.rule, f.key) for f in findings] == []


def test_unquoted_generic_in_an_env_file_is_found_but_not_in_js() -> None:
    value = "hunter2Hunter2x9"
    text = f"password = {value}\n"
    assert [f.rule for f in scan_text(text, "package/.env")] == ["generic-secret-unquoted"]
    assert scan_text(text, "package/index.js") == []


# -- validators and helpers ----------------------------------------------------------------------


def test_github_and_npm_checksums_are_checked() -> None:
    rng = random.Random(8)
    good = fakecreds.github_token(rng)
    bad = good[:-1] + ("x" if good[-1] != "x" else "y")
    assert [f.rule for f in scan_text(f'"{good}"')] == ["github-token"]
    assert scan_text(f'"{bad}"') == []
    good_npm = fakecreds.npm_token(rng)
    bad_npm = good_npm[:-2] + good_npm[-1] + good_npm[-2]
    assert [f.rule for f in scan_text(f'"{good_npm}"')] == ["npm-access-token"]
    assert bad_npm == good_npm or scan_text(f'"{bad_npm}"') == []


def test_pypi_token_must_be_a_macaroon() -> None:
    rng = random.Random(9)
    token = fakecreds.pypi_token(rng)
    assert token.startswith("pypi-AgE")
    assert [f.rule for f in scan_text(token)] == ["pypi-api-token"]
    # same prefix, body no longer parses as location + identifier fields
    broken = "pypi-AgE" + "/" * 0 + fakecreds.chars(rng, string.ascii_letters, len(token) - 8)
    assert scan_text(broken) == []


def test_shannon_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
    assert shannon_entropy(string.ascii_letters + string.digits) == pytest.approx(5.954, abs=1e-3)


def test_malformed_rules_file_names_the_rule(tmp_path: Path) -> None:
    base = RULES_FILE.read_text()
    bad_validator = tmp_path / "v.toml"
    bad_validator.write_text(
        base.replace('validator = "npm_crc32"', 'validator = "no_such_check"', 1)
    )
    with pytest.raises(ValueError, match=r"npm-access-token.*no_such_check"):
        load_rules(bad_validator)
    no_keywords = tmp_path / "k.toml"
    no_keywords.write_text(base.replace('keywords = ["AccountKey="]', "keywords = []", 1))
    with pytest.raises(ValueError, match=r"azure-storage-account-key.*keywords"):
        load_rules(no_keywords)


# -- end to end: an npm tarball through the scanner ----------------------------------------------


def _npm_tarball(tmp_path: Path, members: dict[str, str]) -> Path:
    path = tmp_path / "acme-widget-1.2.3.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def test_scan_artifact_finds_secrets_in_js_and_in_source_map_sources(tmp_path: Path) -> None:
    rng = random.Random(10)
    github = fakecreds.github_token(rng)
    stripe = fakecreds.SK_LIVE + fakecreds.chars(rng, fakecreds.ALNUM, 24)
    source = f'export const stripe = new Stripe("{stripe}");\nexport const x = 1;\n'
    smap = {
        "version": 3,
        "file": "index.js",
        "sources": ["webpack://acme-widget/./src/billing.ts", "webpack://acme-widget/./src/a.ts"],
        "sourcesContent": [source, "export const a = 1;\n"],
        "names": [],
        "mappings": "AAAA",
    }
    tarball = _npm_tarball(
        tmp_path,
        {
            "package.json": json.dumps({"name": "acme-widget", "version": "1.2.3"}),
            "dist/index.js": f'var t="{github}";module.exports=t;\n//# sourceMappingURL=index.js.map\n',
            "dist/index.js.map": json.dumps(smap),
        },
    )
    report = scan_artifact(ScanRequest(tarball))
    secrets = {(f.rule, f.path, f.line) for f in report.findings if f.category is Category.SECRET}
    assert secrets == {
        ("github-token", "package/dist/index.js", 1),
        (
            "stripe-live-secret-key",
            "package/dist/index.js.map → webpack://acme-widget/./src/billing.ts",
            1,
        ),
    }
    everything = repr(report.findings) + json.dumps([f.evidence for f in report.findings])
    assert github not in everything and stripe not in everything
    assert redacted_form(github) in everything and redacted_form(stripe) in everything


def test_private_key_is_shown_by_its_body_not_the_line_break_before_it() -> None:
    case = positive("private-key")
    [finding] = scan_text(case.text, case.path)
    assert finding.key.startswith(case.secret.strip()[:4])
    assert not finding.key[:1].isspace()


# -- tests, fixtures and docs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_id", "path", "severity", "flag"),
    [
        (
            "private-key",
            "pkg-1.0.tar.gz/pkg-1.0/tests/certs/server.key",
            Severity.MEDIUM,
            "in_test_path",
        ),
        ("private-key", "package/test/fixtures/key.js", Severity.MEDIUM, "in_test_path"),
        ("private-key", "pkg-1.0.tar.gz/pkg-1.0/docs/usage.rst", Severity.MEDIUM, "in_docs_path"),
        ("private-key-encrypted", "pkg/tests/test_pkey.py", Severity.LOW, "in_test_path"),
        ("gcp-service-account-key", "pkg/tests/data/sa.json", Severity.MEDIUM, "in_test_path"),
        ("url-basic-auth", "pkg/tests/test_utils.py", Severity.LOW, "in_test_path"),
        ("generic-secret", "package/src/__tests__/client.test.ts", Severity.LOW, "in_test_path"),
        ("generic-secret", "package/README.md", Severity.LOW, "in_docs_path"),
        # a live provider token in a test is a leak all the same
        ("github-token", "pkg/tests/test_client.py", Severity.CRITICAL, "in_test_path"),
        ("aws-access-key-id", "package/examples/upload.js", Severity.HIGH, "in_docs_path"),
    ],
)
def test_fixture_and_example_credentials_are_flagged_at_their_test_severity(
    rule_id: str, path: str, severity: Severity, flag: str
) -> None:
    case = positive(rule_id)
    [finding] = scan_text(case.text, path)
    assert finding.rule == rule_id
    assert finding.severity is severity
    assert finding.evidence[flag] is True
    assert_no_leak(finding, case.secret)


def test_the_same_credential_outside_tests_keeps_its_severity_and_no_flag() -> None:
    case = positive("private-key")
    [finding] = scan_text(case.text, "package/dist/server.js")
    assert finding.severity is Severity.CRITICAL
    assert "in_test_path" not in finding.evidence and "in_docs_path" not in finding.evidence


def test_test_severity_never_raises_a_rule(tmp_path: Path) -> None:
    rules = RULES_FILE.read_text().replace(
        'id = "stripe-test-secret-key"', 'id = "stripe-test-secret-key"\ntest_severity = "high"'
    )
    path = tmp_path / "rules.toml"
    path.write_text(rules)
    case = positive("stripe-test-secret-key")
    doc = TextDoc(path="pkg/tests/t.py", text=case.text, member_path="pkg/tests/t.py")
    [finding] = SecretCheck(load_rules(path)).text(doc, CTX)
    assert finding.severity is Severity.LOW
