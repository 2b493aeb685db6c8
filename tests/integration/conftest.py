"""Session fixtures for tests that start real registry servers on loopback."""

from pypi_servers import devpi, pypiserver, warehouse  # noqa: F401  (PyPI-protocol servers)
