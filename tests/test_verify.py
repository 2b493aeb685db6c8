"""Liveness verification (watcher.verify) against local stand-ins speaking each provider's
documented answers. Every credential is built at test time (fakecreds.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import random
import ssl
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from structlog.testing import capture_logs

sys.path.insert(0, str(Path(__file__).parent))

import fakecreds
from builders import npm_tarball
from provider_standins import PROVIDERS, ProviderStandin, provider_standin

from watcher import metrics
from watcher.config import load_config
from watcher.config.plan import describe_plan
from watcher.errors import ConfigError
from watcher.model import (
    ArtifactSummary,
    Category,
    Credential,
    Finding,
    Manifest,
    Report,
    Severity,
)
from watcher.scanning.checks.base import ScanOptions
from watcher.scanning.scan import ScanRequest, scan_artifact, scan_release
from watcher.verify.engine import CredentialVerifier
from watcher.verify.model import Verdict, VerifySettings
from watcher.verify.providers import PROVIDERS as PROVIDER_TABLE
from watcher.verify.providers import Probe


def _value(provider: str, rng: random.Random) -> tuple[str, str | None]:
    """A format-valid credential for the provider and the companion it needs."""
    a = fakecreds.ALNUM
    if provider == "github":
        return fakecreds.github_token(rng), None
    if provider == "gitlab":
        return "gl" + "pat-" + fakecreds.chars(rng, fakecreds.URLSAFE, 20), None
    if provider == "npm":
        return fakecreds.npm_token(rng), None
    if provider == "slack":
        return "xo" + "xb-" + fakecreds.chars(rng, "0123456789", 12) + "-" + fakecreds.chars(
            rng, a, 24
        ), None
    if provider == "stripe":
        return fakecreds.SK_LIVE + fakecreds.chars(rng, a, 24), None
    if provider == "openai":
        return "sk-" + "proj-" + fakecreds.chars(rng, fakecreds.URLSAFE, 60), None
    if provider == "anthropic":
        return "sk-" + "ant-api03-" + fakecreds.chars(rng, fakecreds.URLSAFE, 93) + "AA", None
    if provider == "sendgrid":
        return "S" + "G." + fakecreds.chars(rng, fakecreds.URLSAFE, 22) + "." + fakecreds.chars(
            rng, fakecreds.URLSAFE, 43
        ), None
    if provider == "twilio":
        return fakecreds.chars(rng, fakecreds.HEX, 32), "A" + "C" + fakecreds.chars(
            rng, fakecreds.HEX, 32
        )
    if provider == "aws":
        return fakecreds.chars(rng, fakecreds.B64, 40), "AK" + "IA" + fakecreds.chars(
            rng, fakecreds.BASE32, 16
        )
    raise AssertionError(provider)


def _credential(provider: str, seed: str = "") -> Credential:
    value, companion = _value(provider, random.Random(provider + seed))
    finding = Finding(
        rule=f"{provider}-rule",
        category=Category.SECRET,
        severity=Severity.HIGH,
        path="package/index.js",
        message="found",
        key=f"{value[:4]}…",
        fingerprint=f"fp-{provider}-{seed}",
    )
    return Credential(finding, provider, value, companion)


def _register(standin: ProviderStandin, cred: Credential) -> None:
    if cred.provider == "aws":
        assert cred.companion is not None
        standin.aws_keys[cred.companion] = cred.value
    elif cred.provider == "twilio":
        assert cred.companion is not None
        standin.twilio[cred.companion] = cred.value
    else:
        standin.live[cred.provider].add(cred.value)


@pytest_asyncio.fixture(loop_scope="function")  # on the test's own loop
async def standin() -> AsyncIterator[ProviderStandin]:
    async with provider_standin() as server:
        yield server


def _verifier(standin: ProviderStandin, **kwargs: object) -> CredentialVerifier:
    settings = VerifySettings(
        timeout=float(kwargs.pop("timeout", 2.0)),  # type: ignore[arg-type]
        urls=standin.urls(),
        rate=float(kwargs.pop("rate", 50.0)),  # type: ignore[arg-type]
        insecure_loopback=True,
    )
    return CredentialVerifier(settings)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_live_credential_is_live_and_an_unknown_one_revoked(
    standin: ProviderStandin, provider: str
) -> None:
    live, dead = _credential(provider, "live"), _credential(provider, "dead")
    _register(standin, live)
    outcomes = await _verifier(standin).verify([live, dead])
    assert [o.verdict for o in outcomes] == [Verdict.LIVE, Verdict.REVOKED]
    assert standin.calls[provider] == 2
    assert all(o.provider == provider for o in outcomes)


async def test_aws_signature_is_checked_by_the_standin(standin: ProviderStandin) -> None:
    """A known key id with the wrong secret: SigV4 fails, STS says SignatureDoesNotMatch."""
    cred = _credential("aws", "sig")
    assert cred.companion is not None
    standin.aws_keys[cred.companion] = cred.value[::-1]
    (outcome,) = await _verifier(standin).verify([cred])
    assert outcome.verdict is Verdict.REVOKED
    assert outcome.detail == "HTTP 403"


async def test_temporary_aws_keys_and_non_personal_gitlab_tokens_are_not_verifiable(
    standin: ProviderStandin,
) -> None:
    aws = _credential("aws", "tmp")
    aws.companion = "AS" + "IA" + (aws.companion or "")[4:]
    gitlab = _credential("gitlab", "deploy")
    gitlab.value = "gl" + "dt-" + gitlab.value[6:]
    outcomes = await _verifier(standin).verify([aws, gitlab])
    assert [o.verdict for o in outcomes] == [Verdict.UNVERIFIED, Verdict.UNVERIFIED]
    assert standin.calls["aws"] == standin.calls["gitlab"] == 0


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        ({"status": 429, "retry_after": "30"}, "rate limited (Retry-After 30s)"),
        ({"status": 503}, "HTTP 503"),
        ({"delay": 1.5}, "timeout"),
        ({"location": "http://127.0.0.1:9/elsewhere"}, "HTTP 302"),
    ],
)
async def test_no_trustworthy_answer_is_unverified_never_revoked(
    standin: ProviderStandin, fault: dict[str, object], detail: str
) -> None:
    cred = _credential("github", "fault")
    _register(standin, cred)
    standin.fault("github", **fault)
    before = metrics.VERIFICATIONS.labels("github", "unverified")._value.get()
    (outcome,) = await _verifier(standin, timeout=0.5).verify([cred])
    assert (outcome.verdict, outcome.detail) == (Verdict.UNVERIFIED, detail)
    assert metrics.VERIFICATIONS.labels("github", "unverified")._value.get() == before + 1


async def test_one_call_per_distinct_credential(standin: ProviderStandin) -> None:
    cred = _credential("npm", "dup")
    _register(standin, cred)
    twin = Credential(
        Finding(
            "npm-rule", Category.SECRET, Severity.HIGH, "package/other.js", "m", fingerprint="x"
        ),
        "npm",
        cred.value,
    )
    outcomes = await _verifier(standin).verify([cred, twin, cred])
    assert [o.verdict for o in outcomes] == [Verdict.LIVE] * 3
    assert standin.calls["npm"] == 1


async def test_calls_are_rate_limited_per_provider(standin: ProviderStandin) -> None:
    creds = [_credential("openai", str(i)) for i in range(6)]
    started = time.monotonic()
    await _verifier(standin, rate=3).verify(creds)
    assert standin.calls["openai"] == 6
    assert time.monotonic() - started >= 0.9  # 3 a second: the second three wait a period


@pytest.mark.parametrize(
    ("url", "insecure"),
    [
        ("http://127.0.0.1:9/github", False),  # loopback, but the test override is off
        ("http://10.0.0.5/github", True),  # the override is for loopback only
        ("ftp://127.0.0.1/github", True),
    ],
)
async def test_a_credential_goes_only_over_tls(url: str, insecure: bool) -> None:
    cred = _credential("github", "tls")
    settings = VerifySettings(timeout=1.0, urls={"github": url}, insecure_loopback=insecure)
    (outcome,) = await CredentialVerifier(settings).verify([cred])
    assert (outcome.verdict, outcome.detail) == (
        Verdict.UNVERIFIED,
        "refused: the provider URL is not https",
    )


async def test_npm_is_verified_on_the_packages_registry(standin: ProviderStandin) -> None:
    cred = _credential("npm", "reg")
    _register(standin, cred)
    urls = {k: v for k, v in standin.urls().items() if k != "npm"}
    verifier = CredentialVerifier(VerifySettings(urls=urls, insecure_loopback=True))
    (none,) = await verifier.verify([cred])
    assert (none.verdict, none.detail) == (Verdict.UNVERIFIED, "no base URL configured")
    (outcome,) = await verifier.verify([cred], registry_url=standin.urls()["npm"])
    assert outcome.verdict is Verdict.LIVE


async def test_the_value_is_in_no_log_line(standin: ProviderStandin) -> None:
    creds = [_credential(p, "log") for p in PROVIDERS]
    for cred in creds[::2]:
        _register(standin, cred)
    with capture_logs() as logs:
        await _verifier(standin).verify(creds)
    assert len([e for e in logs if e["event"] == "credential_verified"]) == len(PROVIDERS)
    text = repr(logs)
    for cred in creds:
        assert cred.value not in text
        assert cred.value[4:16] not in text


def _report(*creds: Credential) -> Report:
    unrelated = Finding(
        "google-api-key", Category.SECRET, Severity.MEDIUM, "a.js", "Google key", fingerprint="g"
    )
    findings = [c.finding for c in creds] + [unrelated]
    summary = ArtifactSummary("npm", "acme", "1.0.0", "acme-1.0.0.tgz", "0" * 64, 1, 1)
    return Report(summary, findings, Manifest(files={}), credentials=list(creds))


async def test_severity_follows_the_verdict_and_the_report_carries_it(
    standin: ProviderStandin,
) -> None:
    live, dead, slow = (_credential("stripe", s) for s in ("a", "b", "c"))
    _register(standin, live)
    report = _report(live, dead)
    await _verifier(standin).verify_report(report)
    assert report.credentials == []  # the raw values are gone once verified
    by_fp = {f.fingerprint: f for f in report.findings}
    assert by_fp[live.finding.fingerprint].severity is Severity.CRITICAL
    assert "verified live at " in by_fp[live.finding.fingerprint].message
    assert by_fp[live.finding.fingerprint].evidence["verification"]["verdict"] == "live"
    assert by_fp[dead.finding.fingerprint].severity is Severity.LOW
    assert by_fp[dead.finding.fingerprint].evidence["verification"]["verdict"] == "revoked"
    other = by_fp["g"]
    assert (other.severity, other.evidence["verification"]["verdict"]) == (
        Severity.MEDIUM,
        "unverified",
    )
    assert report.findings[0].fingerprint == live.finding.fingerprint  # sorted by severity
    standin.fault("stripe", status=503)
    report = _report(slow)
    await _verifier(standin).verify_report(report)
    assert report.findings[0].severity is Severity.HIGH  # unverified: as found


# -- from a scanned artifact to verdicts ---------------------------------------------------------


def _tarball(tmp_path: Path, name: str, members: dict[str, str]) -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        for member, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _artifact_secrets(rng: random.Random) -> tuple[str, str, str, str]:
    github = fakecreds.github_token(rng)
    key_id = "AK" + "IA" + fakecreds.chars(rng, fakecreds.BASE32, 16)
    secret = fakecreds.chars(rng, fakecreds.B64, 40)
    text = (
        f'export const gh = "{github}";\n'
        f'export const aws = {{ accessKeyId: "{key_id}", secretAccessKey: "{secret}" }};\n'
    )
    return text, github, key_id, secret


def test_the_scan_keeps_raw_values_only_when_asked(tmp_path: Path) -> None:
    text, github, key_id, secret = _artifact_secrets(random.Random(50))
    path = _tarball(tmp_path, "acme-1.0.0.tgz", {"index.js": text})
    plain = scan_artifact(ScanRequest(path))
    assert plain.credentials == []
    kept = scan_artifact(ScanRequest(path, options=ScanOptions(keep_credentials=True)))
    got = {(c.provider, c.finding.rule, c.companion) for c in kept.credentials}
    assert got == {("github", "github-token", None), ("aws", "aws-secret-access-key", key_id)}
    assert {c.value for c in kept.credentials} == {github, secret}
    assert all(c.finding in kept.findings for c in kept.credentials)
    assert secret not in repr(kept)


async def test_scan_release_then_verify_end_to_end(
    tmp_path: Path, standin: ProviderStandin
) -> None:
    """Through the worker processes (target and baseline scanned in parallel) and back."""
    text, github, key_id, secret = _artifact_secrets(random.Random(51))
    target = _tarball(tmp_path, "acme-1.0.1.tgz", {"index.js": text})
    baseline = _tarball(tmp_path, "acme-1.0.0.tgz", {"index.js": "export const x = 1;\n"})
    options = ScanOptions(keep_credentials=True)
    report = scan_release(
        [ScanRequest(target, options=options)], [ScanRequest(baseline, options=options)]
    )
    standin.live["github"].add(github)
    standin.aws_keys[key_id] = secret[::-1]  # known key id, wrong secret: STS rejects the signature
    await _verifier(standin).verify_report(report)
    verdicts = {
        f.rule: (f.severity, f.evidence["verification"]["verdict"]) for f in report.findings
    }
    assert verdicts["github-token"] == (Severity.CRITICAL, "live")
    assert verdicts["aws-secret-access-key"] == (Severity.LOW, "revoked")
    assert verdicts["aws-access-key-id"][1] == "unverified"
    assert (standin.calls["github"], standin.calls["aws"]) == (1, 1)


# -- configuration and `watcher scan --verify` ---------------------------------------------------


def _config_text(urls: dict[str, str], *, enabled: bool = False, extra: str = "") -> str:
    providers = "\n".join(f"    {name}: {{url: {url}}}" for name, url in urls.items())
    return (
        "packages:\n  - {ecosystem: npm, name: acme-widget, owner: demo}\n"
        "owners:\n  demo: {console: true}\n"
        f"verify:\n  enabled: {str(enabled).lower()}\n  timeout: 2s\n  rate: 20\n"
        f"  insecure_loopback: true\n{extra}  providers:\n{providers}\n"
    )


def test_verify_config_section(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(_config_text({"github": "https://ghe.acme-corp.invalid/api/v3"}, enabled=True))
    config = load_config(path)
    assert config.scan_options().keep_credentials is True
    settings = config.verify.settings()
    assert settings.urls == {"github": "https://ghe.acme-corp.invalid/api/v3"}
    assert (settings.timeout, settings.rate, settings.insecure_loopback) == (2.0, 20.0, True)
    default = tmp_path / "d.yaml"
    default.write_text(
        "packages:\n  - {ecosystem: npm, name: x, owner: o}\nowners:\n  o: {console: true}\n"
    )
    assert load_config(default).verify.enabled is False
    assert load_config(default).scan_options().keep_credentials is False


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ({"nosuch": "https://h.invalid"}, "verify.providers.nosuch: unknown provider"),
        (
            {"github": "http://ghe.acme-corp.invalid"},
            "verify.providers.github.url: expected an https URL",
        ),
        ({"github": "not a url"}, "expected an http(s) URL"),
    ],
)
def test_verify_config_errors_name_the_key(
    tmp_path: Path, urls: dict[str, str], message: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(_config_text(urls))
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert message in str(excinfo.value)


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "watcher.cli",
        "--log-format",
        "json",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_watcher_scan_verify_end_to_end(tmp_path: Path, standin: ProviderStandin) -> None:
    rng = random.Random(60)
    live = fakecreds.github_token(rng)
    dead = fakecreds.npm_token(rng)
    text = f'export const gh = "{live}";\nexport const npm = "{dead}";\n'
    pkg = npm_tarball(tmp_path / "acme-widget-1.0.0.tgz", {"index.js": text}, name="acme-widget")
    standin.live["github"].add(live)
    config = tmp_path / "c.yaml"
    config.write_text(_config_text(standin.urls()))
    code, out, err = await _cli(
        "scan", str(pkg), "--config", str(config), "--verify", "--format", "json"
    )
    report = json.loads(out)
    verdicts = {
        f["rule"]: (f["severity"], f["evidence"]["verification"]["verdict"])
        for f in report["findings"]
    }
    assert verdicts == {
        "github-token": ("critical", "live"),
        "npm-access-token": ("low", "revoked"),
    }
    assert code == 1  # a live credential fails the scan
    assert (standin.calls["github"], standin.calls["npm"]) == (1, 1)
    for secret in (live, dead):
        assert secret not in out and secret not in err
    assert '"event": "credential_verified"' in err
    # SARIF carries the verdict too
    code, out, _ = await _cli(
        "scan", str(pkg), "--config", str(config), "--verify", "--format", "sarif"
    )
    results = json.loads(out)["runs"][0]["results"]
    assert {r["properties"]["evidence"]["verification"]["verdict"] for r in results} == {
        "live",
        "revoked",
    }
    # without --verify (and verify.enabled false) nothing is sent
    calls = sum(standin.calls.values())
    code, out, _ = await _cli("scan", str(pkg), "--config", str(config), "--format", "json")
    assert sum(standin.calls.values()) == calls
    assert all("verification" not in f["evidence"] for f in json.loads(out)["findings"])


@pytest.mark.parametrize(
    ("provider", "verdict"),
    [
        ("github", Verdict.UNVERIFIED),  # a rate limit or an SSO requirement: proves nothing
        ("openai", Verdict.UNVERIFIED),  # an unsupported region
        ("npm", Verdict.UNVERIFIED),
        ("gitlab", Verdict.LIVE),  # documented: authenticated, scope too narrow
        ("stripe", Verdict.LIVE),  # documented: a restricted key without this permission
        ("anthropic", Verdict.LIVE),  # documented: permission_error of a valid key
    ],
)
async def test_a_403_means_live_only_where_the_provider_documents_it(
    standin: ProviderStandin, provider: str, verdict: Verdict
) -> None:
    standin.fault(provider, status=403)
    (outcome,) = await _verifier(standin).verify([_credential(provider, "403")])
    assert (outcome.verdict, outcome.detail) == (verdict, "HTTP 403")


async def test_a_verifier_that_breaks_leaves_the_credential_unverified(
    standin: ProviderStandin,
) -> None:
    """A bug in one provider's verifier must not fail the scan, nor quote the request."""

    def broken(cred: Credential, base: str) -> Probe:
        raise ValueError(f"cannot build for {cred.value}")

    providers = dict(PROVIDER_TABLE)
    providers["github"] = dataclasses.replace(PROVIDER_TABLE["github"], build=broken)
    settings = VerifySettings(urls=standin.urls(), insecure_loopback=True)
    cred = _credential("github", "broken")
    with capture_logs() as logs:
        (outcome,) = await CredentialVerifier(settings, providers=providers).verify([cred])
    assert (outcome.verdict, outcome.detail) == (Verdict.UNVERIFIED, "verifier error (ValueError)")
    assert cred.value not in repr(logs)


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA signed."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_certificates_are_checked_before_anything_is_sent(
    self_signed: tuple[Path, Path],
) -> None:
    """A TLS stand-in with a self-signed certificate: the handshake fails, the credential is
    never sent, the verdict is unverified."""
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"login": "x"})

    app = web.Application()
    app.router.add_get("/user", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        settings = VerifySettings(timeout=3.0, urls={"github": f"https://127.0.0.1:{port}"})
        (outcome,) = await CredentialVerifier(settings).verify([_credential("github", "tls-ca")])
    finally:
        await runner.cleanup()
    assert outcome.verdict is Verdict.UNVERIFIED
    assert outcome.detail.startswith("connection failed")
    assert seen == []


def test_check_config_plan_says_whether_credentials_are_verified(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(_config_text({"gitlab": "https://gitlab.acme-corp.invalid"}, enabled=True))
    plan = describe_plan(load_config(path))
    assert "verify: found credentials are checked with their own providers" in plan
    assert "gitlab https://gitlab.acme-corp.invalid" in plan
    path.write_text(
        "packages:\n  - {ecosystem: npm, name: x, owner: o}\nowners:\n  o: {console: true}\n"
    )
    assert "verify: disabled" in describe_plan(load_config(path))
