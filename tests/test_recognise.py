"""Sensitive files recognised by content under any name: kubeconfig, a JWK with its private part,
JKS/JCEKS keystores (keytool) and PKCS#12 (openssl) made at test time, PuTTY keys, `.npmrc` and
`.pypirc` shapes. Look-alikes without the secret part are not flagged."""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.builders import npm_tarball
from tests.fakecreds import ALNUM, NPM, URLSAFE, chars
from watcher.model import Category, Report, Severity
from watcher.scanning.checks.recognise import recognise
from watcher.scanning.scan import ScanRequest, scan_artifact

RNG = random.Random(14)


def sensitive(report: Report) -> dict[str, tuple[str, Severity]]:
    found = [f for f in report.findings if f.category is Category.SENSITIVE_FILE]
    assert len({f.path for f in found}) == len(found), "one finding per file here"
    return {f.path: (f.rule, f.severity) for f in found}


def kubeconfig() -> str:
    return (
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://k8s.acme.invalid\n"
        "  name: prod\nusers:\n- name: deployer\n  user:\n"
        f"    token: {chars(RNG, ALNUM, 40)}\ncurrent-context: prod\n"
    )


def jwk(private: bool) -> str:
    key = {"kty": "EC", "crv": "P-256", "x": chars(RNG, URLSAFE, 43), "y": chars(RNG, URLSAFE, 43)}
    if private:
        key["d"] = chars(RNG, URLSAFE, 43)
    return json.dumps({"keys": [key]})


def putty_key() -> str:
    body = "\n".join(chars(RNG, ALNUM + "+/", 64) for _ in range(3))
    return (
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\n"
        f"Public-Lines: 1\n{chars(RNG, ALNUM, 60)}\nPrivate-Lines: 3\n{body}\n"
        f"Private-MAC: {chars(RNG, '0123456789abcdef', 64)}\n"
    )


@pytest.mark.parametrize(
    ("name", "content", "rule"),
    [
        ("deploy/config.bak", kubeconfig(), "kubeconfig"),
        ("keys/signing.json", jwk(private=True), "jwk-private-key"),
        ("ops/deploy-key.txt", putty_key(), "private-key-file"),
        (
            "ci/registry.txt",
            f"//npm.acme.invalid/:_authToken={NPM}{chars(RNG, ALNUM, 36)}\n",
            "npmrc-file",
        ),
        (
            "deploy/upload.cfg",
            f"[distutils]\nindex-servers = pypi\n[pypi]\nusername = __token__\npassword = {chars(RNG, ALNUM, 30)}\n",
            "pypirc-file",
        ),
    ],
)
def test_text_formats_are_recognised_under_any_name(
    tmp_path: Path, name: str, content: str, rule: str
) -> None:
    report = scan_artifact(ScanRequest(npm_tarball(tmp_path / "p.tgz", {name: content})))
    (finding,) = [f for f in report.findings if f.path == f"package/{name}" and f.rule == rule]
    assert finding.evidence["recognised_by"] == "content"


@pytest.mark.parametrize(
    "content",
    [
        jwk(private=False),  # a public key set
        "Our clusters: are many.\nusers: welcome\n",  # prose
        "apiVersion: v1\nclusters:\n- name: a\nusers:\n- name: b\n",  # no credential in it
        "registry=https://npm.acme.invalid/\n",  # an .npmrc without credentials lines
        "[metadata]\nname = acme\n",  # a setup.cfg
    ],
)
def test_look_alikes_are_not_recognised(content: str) -> None:
    assert recognise(content.encode()) is None


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


@pytest.mark.parametrize("storetype", ["JKS", "JCEKS", "PKCS12"])
def test_keytool_keystores_are_recognised_by_structure(tmp_path: Path, storetype: str) -> None:
    store = tmp_path / "store.dat"
    password = chars(RNG, ALNUM, 12)
    subprocess.run(
        [_tool("keytool"), "-genkeypair", "-alias", "t", "-keyalg", "EC", "-dname", "CN=test",
         "-storetype", storetype, "-keystore", str(store), "-storepass", password,
         "-keypass", password, "-validity", "2"],
        check=True, capture_output=True,
    )  # fmt: skip
    assert recognise(store.read_bytes()) == "keystore-file"
    report = scan_artifact(
        ScanRequest(npm_tarball(tmp_path / "p.tgz", {"lib/store.dat": store.read_bytes()}))
    )
    assert sensitive(report)["package/lib/store.dat"] == ("keystore-file", Severity.HIGH)


def test_openssl_pkcs12_is_recognised_without_magic_bytes(tmp_path: Path) -> None:
    openssl = _tool("openssl")
    key, cert, bundle = tmp_path / "k.pem", tmp_path / "c.pem", tmp_path / "bundle.bin"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=test", "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [openssl, "pkcs12", "-export", "-inkey", str(key), "-in", str(cert), "-out", str(bundle),
         "-passout", "pass:" + chars(RNG, ALNUM, 12)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert recognise(bundle.read_bytes()) == "keystore-file"
    # DER that is not a PFX (the certificate itself) is not one
    der = base64.b64decode("".join(cert.read_text().splitlines()[1:-1]))
    assert recognise(der) is None
