"""Fake but format-valid credentials, built at test time.

Nothing here is a real credential and no complete credential appears literally in the repository:
every value is assembled from pieces and seeded random characters, so our own secret scanning and
push protection have nothing to find. Checksummed formats (GitHub, npm) carry a correct CRC32, PyPI
tokens are well-formed macaroons, so the validators are exercised for real.
"""

from __future__ import annotations

import base64
import json
import random
import string
import textwrap
import zlib
from collections.abc import Callable
from dataclasses import dataclass

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"
BASE32 = string.ascii_uppercase + "234567"

# Prefixes split so that no line of this file looks like the start of a credential.
GH = "gh"
NPM = "np" + "m_"
SK_LIVE = "sk_" + "live_"
SK_TEST = "sk_" + "test_"
BEGIN = "-----" + "BEGIN "
END = "-----" + "END "


def chars(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def base62_checksum(data: str) -> str:
    value = zlib.crc32(data.encode())
    out = ""
    while value:
        value, rem = divmod(value, 62)
        out = BASE62[rem] + out
    return out.rjust(6, "0")


def github_token(rng: random.Random, kind: str = "p", *, valid: bool = True) -> str:
    body = chars(rng, ALNUM, 30)
    checksum = base62_checksum(body)
    if not valid:
        checksum = checksum[:-1] + ("A" if checksum[-1] != "A" else "B")
    return f"{GH}{kind}_{body}{checksum}"


def npm_token(rng: random.Random, *, valid: bool = True) -> str:
    body = chars(rng, ALNUM, 30)
    checksum = base62_checksum(body)
    if not valid:
        checksum = checksum[:-1] + ("A" if checksum[-1] != "A" else "B")
    return f"{NPM}{body}{checksum}"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pypi_token(rng: random.Random) -> str:
    """A macaroon v2 (location, identifier, a caveat, signature) as PyPI tokens are."""
    location = b"tokens.invalid"
    identifier = chars(rng, HEX, 32).encode()
    caveat = json.dumps({"version": 1, "permissions": "user"}).encode()
    raw = (
        b"\x02"
        + b"\x01"
        + _varint(len(location))
        + location
        + b"\x02"
        + _varint(len(identifier))
        + identifier
        + b"\x00"
        + b"\x02"
        + _varint(len(caveat))
        + caveat
        + b"\x00\x00"
        + b"\x06\x20"
        + rng.randbytes(32)
    )
    return "pypi-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def pem_body(rng: random.Random, n_bytes: int = 900, *, escaped: bool = False) -> str:
    encoded = base64.b64encode(rng.randbytes(n_bytes)).decode()
    lines = textwrap.wrap(encoded, 64)
    return ("\\n" if escaped else "\n").join(lines)


def pem_private_key(rng: random.Random, kind: str = "RSA ") -> tuple[str, str]:
    body = pem_body(rng)
    label = f"{kind}PRIVATE KEY"
    return f"{BEGIN}{label}-----\n{body}\n{END}{label}-----\n", f"\n{body}\n"


def openssh_private_key(rng: random.Random) -> tuple[str, str]:
    magic = base64.b64encode(b"openssh-key-v1\x00\x00\x00\x00\x04none").decode()
    body = "\n".join(textwrap.wrap(magic + base64.b64encode(rng.randbytes(300)).decode(), 70))
    label = "OPENSSH PRIVATE KEY"
    return f"{BEGIN}{label}-----\n{body}\n{END}{label}-----\n", f"\n{body}\n"


def encrypted_pem_key(rng: random.Random) -> tuple[str, str]:
    body = pem_body(rng)
    label = "ENCRYPTED PRIVATE KEY"
    return f"{BEGIN}{label}-----\n{body}\n{END}{label}-----\n", f"\n{body}\n"


def certificate(rng: random.Random) -> str:
    body = pem_body(rng)
    return f"{BEGIN}CERTIFICATE-----\n{body}\n{END}CERTIFICATE-----\n"


def public_key(rng: random.Random) -> str:
    body = pem_body(rng, 270)
    return f"{BEGIN}PUBLIC KEY-----\n{body}\n{END}PUBLIC KEY-----\n"


def gcp_service_account(rng: random.Random) -> tuple[str, str]:
    body = pem_body(rng, 1200)
    key = f"{BEGIN}PRIVATE KEY-----\n{body}\n{END}PRIVATE KEY-----\n"
    document = {
        "type": "service" + "_account",
        "project_id": "acme-build",
        "private_key_id": chars(rng, HEX, 40),
        "private_key": key,
        "client_email": "ci@acme-build.iam.gserviceaccount.invalid",
        "client_id": chars(rng, string.digits, 21),
    }
    text = json.dumps(document, indent=2)
    return text, json.dumps(key)[1:-1]  # the value as it appears in the JSON text


@dataclass(frozen=True)
class Positive:
    """A text holding one credential and the exact secret the rule should report."""

    text: str
    secret: str
    path: str = "package/dist/index.js"


def _aws_key_id(rng: random.Random) -> str:
    return "AK" + "IA" + chars(rng, BASE32, 16)


def _aws_secret(rng: random.Random) -> str:
    return chars(rng, B64, 40)


def _p_aws_secret(rng: random.Random) -> Positive:
    secret = _aws_secret(rng)
    return Positive(f'const cfg = {{ region: "eu-west-1", secretAccessKey: "{secret}" }};', secret)


def _p_aws_id(rng: random.Random) -> Positive:
    key_id = _aws_key_id(rng)
    return Positive(f'const accessKeyId = "{key_id}";', key_id)


def _p_gcp(rng: random.Random) -> Positive:
    text, secret = gcp_service_account(rng)
    return Positive(text, secret, "package/credentials.json")


def _p_azure_storage(rng: random.Random) -> Positive:
    key = base64.b64encode(rng.randbytes(64)).decode()
    conn = (
        "DefaultEndpointsProtocol=https;AccountName=acmeassets;"
        f"Account{'Key'}={key};EndpointSuffix=core.windows.invalid"
    )
    return Positive(f'module.exports = {{ storage: "{conn}" }};', key)


def _p_azure_client_secret(rng: random.Random) -> Positive:
    secret = chars(rng, ALNUM, 3) + rng.choice(string.digits) + "Q" + "~" + chars(rng, ALNUM, 34)
    return Positive(f'const clientSecret = "{secret}";', secret)


def _p_npm(rng: random.Random) -> Positive:
    token = npm_token(rng)
    return Positive(f'headers.authorization = "Bearer {token}";', token)


def _p_npmrc(rng: random.Random) -> Positive:
    token = "-".join(chars(rng, HEX, n) for n in (8, 4, 4, 4, 12))
    return Positive(f"//npm.acme-corp.invalid/:_auth{'Token'}={token}\n", token, "package/.npmrc")


def _p_pypi(rng: random.Random) -> Positive:
    token = pypi_token(rng)
    return Positive(f"[pypi]\nusername = __token__\npassword = {token}\n", token, "pkg/.pypirc")


def _p_github(rng: random.Random) -> Positive:
    token = github_token(rng, "p")
    return Positive(f'const octokit = new Octokit({{ auth: "{token}" }});', token)


def _p_github_fine(rng: random.Random) -> Positive:
    token = "github" + "_pat_" + chars(rng, ALNUM, 22) + "_" + chars(rng, ALNUM, 59)
    return Positive(f"GH_TOKEN={token}\n", token, "package/.env")


def _p_gitlab(rng: random.Random) -> Positive:
    token = "gl" + "pat-" + chars(rng, URLSAFE, 20)
    return Positive(f'fetch(url, {{ headers: {{ "PRIVATE-TOKEN": "{token}" }} }});', token)


def _p_slack_token(rng: random.Random) -> Positive:
    token = "-".join(
        [
            "xo" + "xb",
            chars(rng, string.digits, 12),
            chars(rng, string.digits, 13),
            chars(rng, ALNUM, 24),
        ]
    )
    return Positive(f'const slack = new WebClient("{token}");', token)


def _p_slack_webhook(rng: random.Random) -> Positive:
    tail = f"T{chars(rng, BASE32, 10)}/B{chars(rng, BASE32, 10)}/{chars(rng, ALNUM, 24)}"
    url = "https://hooks." + "slack.com/services/" + tail
    return Positive(f'await post("{url}", body);', tail)


def _p_stripe_live(rng: random.Random) -> Positive:
    key = SK_LIVE + chars(rng, ALNUM, 24)
    return Positive(f'const stripe = require("stripe")("{key}");', key)


def _p_stripe_test(rng: random.Random) -> Positive:
    key = SK_TEST + chars(rng, ALNUM, 24)
    return Positive(f'const stripe = require("stripe")("{key}");', key)


def _p_twilio_auth(rng: random.Random) -> Positive:
    sid = "A" + "C" + chars(rng, HEX, 32)
    token = chars(rng, HEX, 32)
    text = f'const accountSid = "{sid}";\nconst authToken = "{token}";\nconst client = twilio(accountSid, authToken);'
    return Positive(text, token)


def _p_twilio_key(rng: random.Random) -> Positive:
    key = "S" + "K" + chars(rng, HEX, 32)
    return Positive(f'const apiKey = "{key}";', key)


def _p_sendgrid(rng: random.Random) -> Positive:
    key = "S" + "G." + chars(rng, URLSAFE, 22) + "." + chars(rng, URLSAFE, 43)
    return Positive(f'sgMail.setApiKey("{key}");', key)


def _p_anthropic(rng: random.Random) -> Positive:
    key = "sk-" + "ant-api03-" + chars(rng, URLSAFE, 93) + "AA"
    return Positive(f'const client = new Anthropic({{ apiKey: "{key}" }});', key)


def _p_openai(rng: random.Random) -> Positive:
    key = "sk-" + "proj-" + chars(rng, URLSAFE, 74) + "T3Blbk" + "FJ" + chars(rng, URLSAFE, 74)
    return Positive(f'const openai = new OpenAI({{ apiKey: "{key}" }});', key)


def openai_legacy_key(rng: random.Random) -> str:
    return "sk-" + chars(rng, ALNUM, 20) + "T3Blbk" + "FJ" + chars(rng, ALNUM, 20)


def _p_google(rng: random.Random) -> Positive:
    key = "AI" + "za" + chars(rng, URLSAFE, 35)
    return Positive(f'loadMaps({{ key: "{key}" }});', key)


def _p_private_key_encrypted(rng: random.Random) -> Positive:
    text, secret = encrypted_pem_key(rng)
    return Positive(text, secret, "package/certs/server.key")


def _p_private_key(rng: random.Random) -> Positive:
    text, secret = pem_private_key(rng)
    return Positive(text, secret, "package/certs/server.key")


def _p_url_basic_auth(rng: random.Random) -> Positive:
    password = chars(rng, ALNUM, 18)
    url = f"postgres://deploy:{password}@db.acme-corp.io:5432/app"
    return Positive(f'const pool = new Pool({{ connectionString: "{url}" }});', password)


def _p_generic(rng: random.Random) -> Positive:
    value = chars(rng, ALNUM, 20)
    return Positive(f'const config = {{ dbPass{"word"}: "{value}" }};', value)


def _p_generic_unquoted(rng: random.Random) -> Positive:
    value = chars(rng, ALNUM, 24)
    return Positive(
        f"# service\nDB_HOST=db\nDB_PASS{'WORD'}={value}\n", value, "package/.env.production"
    )


def _p_gitlab_runner_registration(rng: random.Random) -> Positive:
    token = "GR" + "1348941" + chars(rng, ALNUM, 20)
    return Positive(f'runner.register({{ token: "{token}" }});', token)


def _p_gitlab_session(rng: random.Random) -> Positive:
    cookie = chars(rng, string.ascii_lowercase + string.digits, 32)
    return Positive(f'document.cookie = "_gitlab_{"session"}={cookie}; path=/";', cookie)


def _p_slack_legacy(rng: random.Random) -> Positive:
    parts = [chars(rng, string.digits, 10) for _ in range(3)]
    token = "-".join(["xo" + "xs", *parts, chars(rng, HEX, 10)])
    return Positive(f'const legacy = "{token}";', token)


def _p_firebase(rng: random.Random) -> Positive:
    key = "AI" + "za" + chars(rng, URLSAFE, 35)
    text = (
        f'const firebaseConfig = {{ apiKey: "{key}", authDomain: "acme-app.firebaseapp.com", '
        'projectId: "acme-app" };'
    )
    return Positive(text, key)


def _p_curl_basic_auth(rng: random.Random) -> Positive:
    password = chars(rng, ALNUM, 14) + "7!"
    cred = f"deploy:{password}"
    text = f"#!/bin/sh\ncurl -fsS \\\n  -u {cred} https://api.acme-corp.invalid/v1/status\n"
    return Positive(text, cred, "package/scripts/check.sh")


def _p_http_auth_header(rng: random.Random) -> Positive:
    key = chars(rng, HEX, 32)
    return Positive(f'fetch(url, {{ headers: {{ "X-Api-{"Key"}": "{key}" }} }});', key)


# One builder per rule id (tests assert every rule in secrets.toml has one).
POSITIVES: dict[str, Callable[[random.Random], Positive]] = {
    "aws-secret-access-key": _p_aws_secret,
    "aws-access-key-id": _p_aws_id,
    "gcp-service-account-key": _p_gcp,
    "azure-storage-account-key": _p_azure_storage,
    "azure-ad-client-secret": _p_azure_client_secret,
    "npm-access-token": _p_npm,
    "npmrc-auth-token": _p_npmrc,
    "pypi-api-token": _p_pypi,
    "github-token": _p_github,
    "github-fine-grained-pat": _p_github_fine,
    "gitlab-token": _p_gitlab,
    "slack-token": _p_slack_token,
    "slack-webhook-url": _p_slack_webhook,
    "stripe-live-secret-key": _p_stripe_live,
    "stripe-test-secret-key": _p_stripe_test,
    "twilio-auth-token": _p_twilio_auth,
    "twilio-api-key": _p_twilio_key,
    "sendgrid-api-key": _p_sendgrid,
    "anthropic-api-key": _p_anthropic,
    "openai-api-key": _p_openai,
    "google-api-key": _p_google,
    "private-key-encrypted": _p_private_key_encrypted,
    "private-key": _p_private_key,
    "url-basic-auth": _p_url_basic_auth,
    "generic-secret": _p_generic,
    "generic-secret-unquoted": _p_generic_unquoted,
    "gitlab-runner-registration-token": _p_gitlab_runner_registration,
    "gitlab-session-cookie": _p_gitlab_session,
    "slack-legacy-token": _p_slack_legacy,
    "firebase-web-api-key": _p_firebase,
    "curl-basic-auth": _p_curl_basic_auth,
    "http-auth-header": _p_http_auth_header,
}
