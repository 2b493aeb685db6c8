"""Every repository, composed once: what both stores are made of.

The embedded store runs them over its one SQLite connection, the PostgreSQL store over its pool
(replacing the few steps that mean something else with several replicas). A new table group is a
repository added here, and both stores have it.
"""

from __future__ import annotations

from watcher.store.sqlite.approvals import ApprovalRepository
from watcher.store.sqlite.channel_messages import ChannelMessageRepository
from watcher.store.sqlite.channels import ChannelRepository
from watcher.store.sqlite.containment_jobs import ContainmentJobRepository
from watcher.store.sqlite.feed_state import FeedStateRepository
from watcher.store.sqlite.incidents import IncidentRepository
from watcher.store.sqlite.leases import LeaseRepository
from watcher.store.sqlite.manifests import ManifestRepository
from watcher.store.sqlite.origin_checks import OriginCheckRepository
from watcher.store.sqlite.outbox import OutboxRepository
from watcher.store.sqlite.releases import ReleaseRepository
from watcher.store.sqlite.status import StatusRepository


class Repositories(
    FeedStateRepository,
    ReleaseRepository,
    ManifestRepository,
    IncidentRepository,
    OutboxRepository,
    ChannelRepository,
    LeaseRepository,
    StatusRepository,
    ContainmentJobRepository,
    ApprovalRepository,
    OriginCheckRepository,
    ChannelMessageRepository,
):
    """Every concern's repository over one `Db` (a connection, or a pool that behaves as one)."""
