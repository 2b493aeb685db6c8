"""Session fixtures for tests that start real registry servers on loopback."""

from npm_servers import couch, couch_server, verdaccio  # noqa: F401  (npm-protocol servers)
from pypi_servers import devpi, pypiserver, warehouse  # noqa: F401  (PyPI-protocol servers)
