"""The store contract: one suite over the protocols of `watcher.store.api`, run against every
implementation.

An implementation joins by one fixture that returns an `OpenState` (a function opening a new
handle on one shared state: another connection, as another process would have) and its name in
`IMPLEMENTATIONS`. Tests use `store` (one open handle) or `open_state` (more handles on the same
state, or a reopen).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.pgserver import PgServer, session_server
from watcher.store import open_store
from watcher.store.api import Store

OpenState = Callable[[], Awaitable[Store]]

IMPLEMENTATIONS = ["sqlite_state", "postgres_state"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    yield from session_server()


@pytest.fixture
def sqlite_state(tmp_path: Path) -> OpenState:
    """The embedded store: every handle is a connection to one file."""
    path = tmp_path / "state.db"
    return lambda: open_store(path)


@pytest.fixture
def postgres_state(pg_server: PgServer) -> OpenState:
    """The shared store: every handle is its own pool on one fresh database, as each replica's."""
    url = pg_server.fresh_database()
    return lambda: open_store(url)


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda name: name.removesuffix("_state"))
def open_state(request: pytest.FixtureRequest) -> OpenState:
    state: OpenState = request.getfixturevalue(request.param)
    return state


@pytest.fixture
async def store(open_state: OpenState) -> AsyncIterator[Store]:
    opened = await open_state()
    yield opened
    await opened.close()
