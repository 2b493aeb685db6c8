"""store.url selects PostgreSQL: url and path exclude each other, SQLite-only keys are refused,
the password never shows."""

from __future__ import annotations

import random
import string

import pytest

from tests.fakecreds import chars
from watcher.config.loader import parse_config
from watcher.config.plan import describe_plan
from watcher.errors import ConfigError


def fake_password() -> str:
    return chars(random.Random(), string.ascii_letters + string.digits, 24)


BASE = "owners:\n  demo:\n    console: true\npackages:\n  - {ecosystem: npm, name: left-pad, owner: demo}\n"


def _config(store: str) -> str:
    return f"store:\n{store}\n{BASE}"


def test_url_selects_postgres_with_a_default_lease_and_a_masked_password() -> None:
    secret = fake_password()
    config = parse_config(_config(f"  url: postgresql://w:{secret}@db:5432/watcher"))
    assert config.store.database_url == f"postgresql://w:{secret}@db:5432/watcher"
    assert config.store.lease == 15.0
    assert config.store.location == "postgresql://w:***@db:5432/watcher"
    plan = describe_plan(config)
    assert "postgresql://w:***@db:5432/watcher" in plan and secret not in plan
    assert secret not in repr(config)


@pytest.mark.parametrize(
    ("extra", "names"),
    [("  path: ./s.db", ("store.url", "store.path")), ("  synchronous: normal", ("SQLite",))],
)
def test_url_excludes_sqlite_keys(extra: str, names: tuple[str, ...]) -> None:
    secret = fake_password()
    with pytest.raises(ConfigError) as raised:
        parse_config(_config(f"  url: postgresql://w:{secret}@db/watcher\n{extra}"))
    text = str(raised.value)
    assert all(name in text for name in names) and secret not in text


def test_a_url_of_another_scheme_is_refused_masked() -> None:
    secret = fake_password()
    with pytest.raises(ConfigError) as raised:
        parse_config(_config(f"  url: mysql://w:{secret}@db/watcher"))
    assert "postgresql://" in str(raised.value) and secret not in str(raised.value)
