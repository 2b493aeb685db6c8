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
from watcher.scanning.checks import secrets_decode
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
    assert ids.index("firebase-web-api-key") < ids.index("google-api-key")
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
        # -- shapes met in a bundled CLI (@anthropic-ai/claude-code 2.1.88's cli.js, its map) --
        "minified oauth client joining the scheme and the token": (
            'K.token_type=K.token_type||"Bearer";let A={Authorization:K.token_type+" "+'
            'K.access_token};let $={Authorization:Y.token_type+" "+z.access_token};'
        ),
        "minified flags after a key ending in auth": (
            "fromPartial(q){let K=wj_();return K.is_ci=q.is_ci??!1,K.is_app_auth=q.is_app_auth"
            '??!1,K.version=q.version??"",K}'
        ),
        # -- shapes met on the corpus re-run (docs/precision.md) --
        "tokenizer scope with a capture substitution": (
            '{ regex: /(@keywords)/, action: { token: "keyword.$0x" } }'
        ),
        "dependency specifiers under a credential-named package": (
            '{"@acme/credentials-store":"workspace:*","@acme/secret-sauce":"catalog:prod"}'
        ),
        "tailwind variants on a group named like a key": (
            'className:"opacity-0 group-hover/routing-key:opacity-100 '
            'group-focus-within/api-token:pointer-events-auto"'
        ),
        "header name under a token constant": (
            'const X_AWS_EC2_METADATA_TOKEN = "x-aws-ec2-metadata-token";\n'
            'const AUTH_HEADER_SECRET = "x-hub-signature-secret";'
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
    assert [(f.rule, f.severity) for f in scan_text(f'"{good}"')] == [
        ("github-token", Severity.CRITICAL)
    ]
    assert [(f.rule, f.severity) for f in scan_text(f'"{bad}"')] == [("github-token", Severity.LOW)]
    good_npm = fakecreds.npm_token(rng)
    assert [f.rule for f in scan_text(f'"{good_npm}"')] == ["npm-access-token"]


def _bad_checksums() -> dict[str, tuple[str, str, str]]:
    rng = random.Random(81)
    return {
        "github": (
            f'auth("{fakecreds.github_token(rng, valid=False)}")',
            "github-token",
            "GitHub token",
        ),
        "npm": (
            f'_token = "{fakecreds.npm_token(rng, valid=False)}"',
            "npm-access-token",
            "npm access token",
        ),
        "pypi": (
            "pypi-" + "AgE" + fakecreds.chars(rng, fakecreds.ALNUM, 80),
            "pypi-api-token",
            "PyPI API token",
        ),
    }


@pytest.mark.parametrize("name", sorted(_bad_checksums()))
def test_a_prefixed_token_with_a_bad_checksum_is_a_low_finding(name: str) -> None:
    """Considered, not dropped: the reader sees the shape was found and why it is not paged."""
    text, rule_id, shape = _bad_checksums()[name]
    findings = scan_text(text)
    assert [(f.rule, f.severity) for f in findings] == [(rule_id, Severity.LOW)]
    assert findings[0].evidence["checksum_valid"] is False
    assert f"shape of {shape}" in findings[0].message
    assert "checksum invalid: probably a test value" in findings[0].message


def test_pypi_token_must_be_a_macaroon() -> None:
    rng = random.Random(9)
    token = fakecreds.pypi_token(rng)
    assert token.startswith("pypi-AgE")
    assert [f.rule for f in scan_text(token)] == ["pypi-api-token"]
    # same prefix, body no longer parses as location + identifier fields
    broken = "pypi-AgE" + "/" * 0 + fakecreds.chars(rng, string.ascii_letters, len(token) - 8)
    assert [(f.rule, f.severity) for f in scan_text(broken)] == [("pypi-api-token", Severity.LOW)]


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


# -- breadth: assignment forms, HTTP credentials, token families, decoding (issue 16) ------------

ASSIGNMENT_FORMS = [
    ('const apiKey: string = "{v}";', "package/src/config.ts"),
    ('var dbPassword string = "{v}"', "package/config.go"),
    ('val apiToken: String = "{v}"', "package/Config.kt"),
    ('let secret = "{v}";', "package/index.js"),
    ('const token = process.env.API_TOKEN || "{v}";', "package/index.js"),
    ('const token = process.env.API_TOKEN ?? "{v}";', "package/index.js"),
    ('token = os.getenv("API_TOKEN", "{v}")', "package/settings.py"),
    ('System.setProperty("APP_TOKEN", "{v}");', "package/Main.java"),
    ('props.put("password", "{v}");', "package/Main.java"),
    ('$apiToken .= "{v}";', "package/config.php"),
    ('API_TOKEN ?= "{v}"', "package/Makefile"),
    ('API_TOKEN ::= "{v}"', "package/Makefile"),
    ('  "password" => "{v}"', "package/pipeline.conf"),
    ('{{"app.env": "HOST=db\\nAPI_TOKEN={v}\\nDEBUG=0"}}', "package/app.json"),
    ("<settings>\n  <apiToken>\n    {v}\n  </apiToken>\n</settings>", "package/app.xml"),
    ('"credentials": "{v}"', "package/app.json"),
    ("creds = {v}", "package/app.ini"),
]


@pytest.mark.parametrize(("template", "path"), ASSIGNMENT_FORMS)
def test_assignment_forms_across_languages(template: str, path: str) -> None:
    value = fakecreds.chars(random.Random(template), fakecreds.ALNUM, 22) + "7q"
    findings = scan_text(template.format(v=value), path)
    assert [(f.key, f.severity) for f in findings] == [(redacted_form(value), Severity.MEDIUM)]
    assert findings[0].rule.startswith("generic-secret")


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ('const apiKey: string = "{v}";', "package/src/config.ts"),
        ('token = os.getenv("API_TOKEN", "{v}")', "package/settings.py"),
        ("<settings>\n  <apiToken>\n    {v}\n  </apiToken>\n</settings>", "package/app.xml"),
        ('{{"app.env": "API_TOKEN={v}\\nDEBUG=0"}}', "package/app.json"),
    ],
)
@pytest.mark.parametrize(
    "value", ["this.config.apiToken", "${API_TOKEN}", "your_token_here", "getApiToken"]
)
def test_assignment_forms_skip_references_and_placeholders(
    template: str, path: str, value: str
) -> None:
    assert scan_text(template.format(v=value), path) == []


def test_code_shaped_neighbours_of_the_bundle_negatives_are_still_found() -> None:
    """The other side of the bundle negatives above: a literal token in the same code shapes, an
    env string whose key starts it, a dashed value with a random part."""
    rng = random.Random(35)
    tok = fakecreds.chars(rng, fakecreds.ALNUM, 30) + "9"
    dashed = "ab-" + fakecreds.chars(rng, fakecreds.ALNUM, 14) + "4-token"
    cases = [
        ('let A={Authorization:"Bearer ' + tok + '"};', "http-auth-header", tok),
        ('{"app.env": "AUTH=' + tok + '\\nDEBUG=0"}', "generic-secret", tok),
        ('const X_API_TOKEN = "' + dashed + '";', "generic-secret", dashed),
        ('curl -H "X-Routing-Key: ' + tok + '" https://h.invalid/', "http-auth-header", tok),
        ('token: "keyword.' + tok + '"', "generic-secret", "keyword." + tok),
    ]
    for text, rule, secret in cases:
        found = [(f.rule, f.key) for f in scan_text(text, "package/cli.js")]
        assert found == [(rule, redacted_form(secret))], text


def test_a_password_with_dots_is_not_an_identifier_but_a_member_chain_is() -> None:
    rng = random.Random(31)
    dotted = ".".join(fakecreds.chars(rng, fakecreds.ALNUM, 5) + str(n) + "x" for n in range(3))
    assert [f.key for f in scan_text(f'password = "{dotted}"')] == [redacted_form(dotted)]
    for name in ("config.auth.token", "settings.v2.apiKey", "process.env.SECRET"):
        assert scan_text(f'password = "{name}"') == []


def _curl_cases() -> tuple[list[tuple[str, str]], list[str]]:
    rng = random.Random(32)
    pw = fakecreds.chars(rng, fakecreds.ALNUM, 12) + "4!"
    positives = [
        (f"curl -u admin:{pw} https://api.acme-corp.invalid/", f"admin:{pw}"),
        (f"curl -s --user 'ci-bot:{pw}' https://api.acme-corp.invalid/", f"ci-bot:{pw}"),
        (f'curl --user="deploy:{pw}" https://api.acme-corp.invalid/', f"deploy:{pw}"),
        (f'curl -X POST \\\n  -H "Accept: */*" \\\n  -u ops:{pw} https://h.invalid/', f"ops:{pw}"),
        (f'curl -u ":{pw}" https://api.acme-corp.invalid/', f":{pw}"),
    ]
    negatives = [
        'curl -u "$USER:$PASS" https://api.acme-corp.invalid/',
        "curl -u ${user}:${password} https://api.acme-corp.invalid/",
        "curl -u <user:password> https://api.acme-corp.invalid/",
        "curl --user neo4j:[PASSWORD] http://h.invalid/",
        "curl -u admin:changeme https://api.acme-corp.invalid/",
        "curl -u username:token https://api.acme-corp.invalid/",
        'curl -u "xxx:yyy" https://api.acme-corp.invalid/',
        "curl -u justauser https://api.acme-corp.invalid/",
        # a -u of another command on a later line, not a continuation of the curl command
        "curl https://h.invalid/\nnc -u -l 41234:abcdef",
    ]
    return positives, negatives


@pytest.mark.parametrize("index", range(len(_curl_cases()[0])))
def test_curl_user_password_is_found(index: int) -> None:
    text, secret = _curl_cases()[0][index]
    findings = scan_text(text, "package/scripts/deploy.sh")
    assert [(f.rule, f.key) for f in findings] == [("curl-basic-auth", redacted_form(secret))]
    assert_no_leak(findings[0], secret.split(":", 1)[1])


@pytest.mark.parametrize("index", range(len(_curl_cases()[1])))
def test_curl_without_a_literal_password_is_not(index: int) -> None:
    assert scan_text(_curl_cases()[1][index], "package/scripts/deploy.sh") == []


def _header_cases() -> tuple[list[tuple[str, str]], list[str]]:
    rng = random.Random(33)
    tok = fakecreds.chars(rng, fakecreds.ALNUM, 30) + "9"
    basic = base64.b64encode(b"svc:" + fakecreds.chars(rng, fakecreds.ALNUM, 16).encode()).decode()
    uuid_key = str(uuid.UUID(int=rng.getrandbits(128)))
    positives = [
        (f'curl -H "Authorization: Bearer {tok}" https://h.invalid/', tok),
        (f"curl -H 'Authorization: Basic {basic}' https://h.invalid/", basic),
        (f'curl -H "Authorization: Token {tok}" https://h.invalid/', tok),
        (f"Authorization: {uuid_key}", uuid_key),
        (f'headers = {{"X-Api-Key": "{tok}"}}', tok),
        (f'curl -H "X-Octopus-ApiKey: {uuid_key}" https://h.invalid/', uuid_key),
        (f'curl -H "apikey: {uuid_key}" https://h.invalid/', uuid_key),
        (f'curl -H "Token: {tok}" https://h.invalid/', tok),
    ]
    negatives = [
        'curl -H "Authorization: Bearer $API_KEY" https://h.invalid/',
        'curl -H "Authorization: Bearer <your token>" https://h.invalid/',
        'curl -H "Authorization: Bearer XXXXXXXXXXXXXXXX" https://h.invalid/',
        'curl -H "Authorization: Basic ..." https://h.invalid/',
        'fetch(u, { headers: { Authorization: "Bearer " + token } })',
        "fetch(u, { headers: { Authorization: `Bearer ${token}` } })",
        "req.headers.authorization = authorizationHeader;",
        'curl -H "Authorization: Bearer $(gcloud auth print-access-token)" https://h.invalid/',
        'curl -H "X-CSRF-Token: ' + tok + '" https://h.invalid/',
    ]
    return positives, negatives


@pytest.mark.parametrize("index", range(len(_header_cases()[0])))
def test_http_credential_headers_are_found(index: int) -> None:
    text, secret = _header_cases()[0][index]
    findings = scan_text(text, "package/README.sh")
    assert [(f.rule, f.key) for f in findings] == [("http-auth-header", redacted_form(secret))]


@pytest.mark.parametrize("index", range(len(_header_cases()[1])))
def test_http_headers_without_a_literal_credential_are_not(index: int) -> None:
    assert scan_text(_header_cases()[1][index], "package/index.js") == []


def _token_families() -> list[tuple[str, str]]:
    rng = random.Random(34)
    a = fakecreds.ALNUM
    gl = "gl"
    families = [
        (f"{gl}cbt-{fakecreds.chars(rng, a, 3)}_{fakecreds.chars(rng, a, 20)}", "gitlab-token"),
        (f"{gl}ft-{fakecreds.chars(rng, a, 20)}", "gitlab-token"),
        (f"{gl}rt-t1_{fakecreds.chars(rng, a, 27)}.01{fakecreds.chars(rng, a, 7)}", "gitlab-token"),
        (f"{gl}imt-{fakecreds.chars(rng, a, 25)}", "gitlab-token"),
        (f"{gl}agent-{fakecreds.chars(rng, a, 50)}", "gitlab-token"),
        (f"{gl}oas-{fakecreds.chars(rng, a, 64)}", "gitlab-token"),
        (f"{gl}soat-{fakecreds.chars(rng, a, 20)}", "gitlab-token"),
        (f"{gl}ffct-{fakecreds.chars(rng, a, 20)}", "gitlab-token"),
        ("GR" + "1348941" + fakecreds.chars(rng, a, 20), "gitlab-runner-registration-token"),
        ("xo" + "xe.xoxp-1-" + fakecreds.chars(rng, a, 163), "slack-token"),
        ("xo" + "xe-1-" + fakecreds.chars(rng, a, 146), "slack-token"),
        (
            "xo"
            + "xb-"
            + fakecreds.chars(rng, string.digits, 12)
            + "-"
            + fakecreds.chars(rng, a, 24),
            "slack-token",
        ),
        ("xo" + "xa-2-" + fakecreds.chars(rng, a, 12) + "7", "slack-legacy-token"),
        ("AB" + "IA" + fakecreds.chars(rng, fakecreds.BASE32, 16), "aws-access-key-id"),
        ("AC" + "CA" + fakecreds.chars(rng, fakecreds.BASE32, 16), "aws-access-key-id"),
        ("rk_" + "live_" + fakecreds.chars(rng, a, 40), "stripe-live-secret-key"),
        ("github" + "_pat_" + fakecreds.chars(rng, a, 82), "github-fine-grained-pat"),
        ("S" + "G." + fakecreds.chars(rng, fakecreds.URLSAFE + ".", 66), "sendgrid-api-key"),
    ]
    hook = "hooks." + "slack.com/workflows/T" + fakecreds.chars(rng, fakecreds.BASE32, 10)
    hook += (
        "/A"
        + fakecreds.chars(rng, fakecreds.BASE32, 10)
        + "/"
        + fakecreds.chars(rng, string.digits, 18)
    )
    hook += "/" + fakecreds.chars(rng, a, 24)
    families.append((hook, "slack-webhook-url"))
    return families


@pytest.mark.parametrize("index", range(len(_token_families())))
def test_token_families_are_found_without_any_key_name(index: int) -> None:
    token, rule_id = _token_families()[index]
    findings = scan_text(f'x("{token}")')
    assert [f.rule for f in findings] == [rule_id]
    assert findings[0].severity.rank >= Severity.HIGH.rank


def test_firebase_web_config_key_is_info_and_a_lone_google_key_medium() -> None:
    case = positive("firebase-web-api-key")
    assert [(f.rule, f.severity) for f in scan_text(case.text)] == [
        ("firebase-web-api-key", Severity.INFO)
    ]
    key = positive("google-api-key").secret
    assert [(f.rule, f.severity) for f in scan_text(f'geocode({{ key: "{key}" }})')] == [
        ("google-api-key", Severity.MEDIUM)
    ]


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ('publicToken = "{v}"', "package/index.js"),
        ('const publishableToken = "{v}";', "package/index.js"),
        ("csrf-token={v}", "package/app.ini"),
        ('"csrfToken": "{v}"', "package/app.json"),
        ("keyVaultToStoreSecrets: {v}", "package/app.yaml"),
        ('nonMatchingToken := "task_test_{v}"', "package/main.go"),
        ('"tokenUrl": "{v}"', "package/app.json"),
        ("TOKEN_FILE = {v}", "package/app.ini"),
        ('fetch("https://h.invalid/cb?token={v}")', "package/index.js"),
        ('const u = "/login?PASSWORD={v}&x=1";', "package/index.js"),
    ],
)
def test_names_that_are_not_credentials(template: str, path: str) -> None:
    value = fakecreds.chars(random.Random(template), fakecreds.ALNUM, 28) + "3"
    assert scan_text(template.format(v=value), path) == []


def test_base64_of_a_pem_key_is_decoded_once() -> None:
    pem, body = fakecreds.pem_private_key(random.Random(35))
    blob = base64.b64encode(pem.encode()).decode()
    text = f"apiVersion: v1\nkind: Secret\ndata:\n  tls.key: {blob}\n"
    findings = scan_text(text, "package/deploy/secret.yaml")
    assert [(f.rule, f.line, f.evidence["encoding"]) for f in findings] == [
        ("private-key", 4, "base64")
    ]
    assert_no_leak(findings[0], body.strip())
    # decoded text is not decoded again: base64 of the base64 is left alone
    twice = base64.b64encode(blob.encode()).decode()
    assert scan_text(f"k: {twice}\n", "package/x.yaml") == []


def test_base64_json_credentials_and_jwt_payloads_are_searched() -> None:
    rng = random.Random(36)
    sa_text, _ = fakecreds.gcp_service_account(rng)
    blob = base64.b64encode(sa_text.encode()).decode()
    findings = scan_text(f'const creds = "{blob}";')
    assert ("gcp-service-account-key", "base64") in [
        (f.rule, f.evidence.get("encoding")) for f in findings
    ]
    password = fakecreds.chars(rng, fakecreds.ALNUM, 20) + "5"

    def seg(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    jwt = ".".join([seg({"alg": "HS256"}), seg({"sub": "svc", "password": password}), "c2ln"])
    findings = scan_text(f"session = {jwt}\n", "package/fixtures.txt")
    assert [
        (f.rule, f.key, f.evidence["encoding"]) for f in findings if "encoding" in f.evidence
    ] == [("generic-secret", redacted_form(password), "jwt-payload")]


def test_decoding_is_bounded() -> None:
    rng = random.Random(37)
    blobs = [
        base64.b64encode(
            json.dumps({"n": i, "pad": fakecreds.chars(rng, fakecreds.ALNUM, 20)}).encode()
        ).decode()
        for i in range(secrets_decode.MAX_BLOBS + 10)
    ]
    decoded = list(secrets_decode.decoded_texts(" ".join(blobs)))
    assert len(decoded) == secrets_decode.MAX_BLOBS
    # random bytes that happen to start like JSON are not text: not searched
    binary = base64.b64encode(b'{"' + rng.randbytes(300)).decode()
    assert list(secrets_decode.decoded_texts(binary)) == []


@pytest.mark.parametrize("conftest_first", [True, False])
def test_a_file_beside_a_conftest_is_a_test_whatever_its_directory_is_called(
    tmp_path: Path, conftest_first: bool
) -> None:
    text = positive("generic-secret").text.replace("const", "CONFIG =")
    members = {"acme/checks/helpers.py": text, "acme/checks/conftest.py": "import pytest\n"}
    if not conftest_first:  # the conftest after its neighbour in the tar: still known
        members = dict(reversed(members.items()))
    members["acme/core/settings.py"] = text  # not beside a conftest: what the package runs
    members["conftest.py"] = "pytest_plugins = []\n"  # the project root's: configures, marks none
    members["setup_env.py"] = text
    report = scan_artifact(ScanRequest(_npm_tarball(tmp_path, members)))
    found = {f.path: f for f in report.findings if f.rule == "generic-secret"}
    beside = found["package/acme/checks/helpers.py"]
    assert beside.severity is Severity.LOW and beside.evidence["in_test_path"] is True
    runs = found["package/acme/core/settings.py"]
    assert runs.severity is Severity.MEDIUM and "in_test_path" not in runs.evidence
    root = found["package/setup_env.py"]
    assert root.severity is Severity.MEDIUM and "in_test_path" not in root.evidence
