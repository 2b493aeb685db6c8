"""`registries.pypi`: the Simple API index (null: the machine's pip settings) and its journal."""

from __future__ import annotations

from watcher.sections import RegistryConfig
from watcher.units import Duration


class PypiRegistryConfig(RegistryConfig):
    poll_interval: Duration = 60.0
    # Whether the index is a Warehouse deployment (management pages, JSON API) for runbooks;
    # null: only pip's own default index (and its test sibling) is taken for one.
    warehouse: bool | None = None
