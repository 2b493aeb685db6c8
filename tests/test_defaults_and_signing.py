"""Well-known default accounts of common servers are placeholders; a signing secret (JWT, session,
cookie, framework secret key) in a production configuration file is high, elsewhere medium."""

from __future__ import annotations

import random

import pytest

from tests.fakecreds import chars
from watcher.model import Severity
from watcher.scanning.checks.base import ScanContext, TextDoc
from watcher.scanning.checks.locations import is_production_config
from watcher.scanning.checks.secrets import SecretCheck

RNG = random.Random(16)
# no vowels: a random value never spells a placeholder word ("test", "demo", …)
STRONG = "bcdfghjkmnpqrstvwxzBCDFGHJKLMNPQRSTVWXZ23456789"


def findings(text: str, path: str):
    doc = TextDoc(path=path, text=text, member_path=path)
    return list(SecretCheck().text(doc, ScanContext(ecosystem=None, name=None, version=None)))


@pytest.mark.parametrize(
    "text",
    [
        "AMQP_URL=amqp://guest:guest@rabbitmq:5672/\n",
        "DATABASE_URL=postgres://postgres:postgres@db:5432/app\n",
        "MINIO_ROOT_PASSWORD=minioadmin\n",
        "url: mongodb://admin:admin@mongo:27017\n",
        "ELASTIC_PASSWORD=elastic\n",
    ],
)
def test_default_accounts_are_placeholders(text: str) -> None:
    assert findings(text, "package/docker/.env") == []


def test_the_same_shape_with_a_real_looking_password_is_reported() -> None:
    password = chars(RNG, STRONG, 18)
    found = findings(f"AMQP_URL=amqp://guest:{password}@rabbitmq:5672/\n", "package/docker/.env")
    assert [f.rule for f in found] == ["url-basic-auth"]


@pytest.mark.parametrize(
    "path",
    [
        "app/.env.production",
        "app/config/production.json",
        "app/config/environments/production.rb",
        "app/settings/prod.py",
        "app/src/main/resources/application-prod.yml",
        "app/appsettings.Production.json",
    ],
)
@pytest.mark.parametrize("key", ["JWT_SECRET", "SESSION_SECRET", "cookieSecret", "SECRET_KEY"])
def test_signing_secret_in_production_config_is_high(path: str, key: str) -> None:
    assert is_production_config(path)
    value = chars(RNG, STRONG, 32)
    if path.endswith(".json"):
        line = f'{{"{key}": "{value}"}}\n'
    elif path.endswith(".yml"):
        line = f'{key}: "{value}"\n'
    else:
        line = f'{key}="{value}"\n'
    (finding,) = findings(line, path)
    assert finding.rule.startswith("generic-secret")
    assert finding.severity is Severity.HIGH
    assert finding.evidence["signing_secret_in_production_config"] is True


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("JWT_SECRET", "app/config/development.json"),  # not production
        ("DB_PASSWORD", "app/.env.production"),  # not a signing secret
    ],
)
def test_other_secrets_or_other_configs_keep_their_severity(key: str, path: str) -> None:
    assert is_production_config(path) == path.endswith("production")
    value = chars(RNG, STRONG, 32)
    line = f'"{key}": "{value}"\n' if path.endswith(".json") else f'{key}="{value}"\n'
    (finding,) = findings(line, path)
    assert finding.severity is Severity.MEDIUM
    assert "signing_secret_in_production_config" not in finding.evidence
