"""One module per finding category. `default_checks` builds a fresh set per scan (checks may keep
per-scan state), `comparison_checks` those that compare two releases' manifests."""

from watcher.checks.base import Check, ComparisonCheck
from watcher.checks.hooks import InstallHookCheck
from watcher.checks.internal import InternalReferenceCheck
from watcher.checks.secrets import SecretCheck
from watcher.checks.sensitive import SensitiveFileCheck
from watcher.checks.size import SizeAnomalyCheck
from watcher.checks.sourcemap import SourceMapCheck
from watcher.checks.unexpected import UnexpectedContentCheck
from watcher.checks.vcs import VcsMetadataCheck


def default_checks() -> list[Check]:
    return [
        SourceMapCheck(),
        SecretCheck(),
        SensitiveFileCheck(),
        VcsMetadataCheck(),
        InstallHookCheck(),
        InternalReferenceCheck(),
    ]


def comparison_checks() -> list[ComparisonCheck]:
    return [SizeAnomalyCheck(), UnexpectedContentCheck()]
