"""One module per finding category. `default_checks` builds a fresh set per scan (checks may keep
per-scan state), `comparison_checks` those that compare two releases' manifests."""

from watcher.scanning.checks.base import Check, ComparisonCheck
from watcher.scanning.checks.hooks import InstallHookCheck
from watcher.scanning.checks.internal import InternalReferenceCheck
from watcher.scanning.checks.secrets import SecretCheck
from watcher.scanning.checks.sensitive import SensitiveFileCheck
from watcher.scanning.checks.size import SizeAnomalyCheck
from watcher.scanning.checks.sourcemap import SourceMapCheck
from watcher.scanning.checks.unexpected import UnexpectedContentCheck
from watcher.scanning.checks.vcs import VcsMetadataCheck


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
