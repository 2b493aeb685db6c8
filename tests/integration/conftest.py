"""Session fixtures for tests that start real registry servers on loopback."""

from collections.abc import AsyncIterator

import pytest
from npm_servers import couch, couch_server, verdaccio  # noqa: F401  (npm-protocol servers)
from pypi_servers import devpi, pypiserver, warehouse  # noqa: F401  (PyPI-protocol servers)
from service_harness import webhook_secret

from tests.receivers import Receiver, webhook_receiver


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Receiver, str]]:
    """A Standard Webhooks receiver on loopback and its signing secret."""
    secret = webhook_secret()
    async with webhook_receiver(secret) as receiver:
        yield receiver, secret
