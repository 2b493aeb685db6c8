"""One module per finding category. `default_checks` builds a fresh set per scan (checks may keep
per-scan state), `comparison_checks` those that compare two releases (manifests, registry metadata)."""

from watcher.scanning.checks.base import Check, ComparisonCheck, ScanOptions
from watcher.scanning.checks.canaries import CanaryCheck
from watcher.scanning.checks.changes import ChangeFacts, ChangesCheck
from watcher.scanning.checks.hooks import InstallHookCheck
from watcher.scanning.checks.internal import InternalReferenceCheck
from watcher.scanning.checks.private import PrivateSourceCheck, matcher_for
from watcher.scanning.checks.provenance import ProvenanceCheck
from watcher.scanning.checks.secrets import SecretCheck
from watcher.scanning.checks.sensitive import SensitiveFileCheck
from watcher.scanning.checks.size import SizeAnomalyCheck
from watcher.scanning.checks.sourcemap import SourceMapCheck
from watcher.scanning.checks.unexpected import UnexpectedContentCheck
from watcher.scanning.checks.vcs import VcsMetadataCheck


def default_checks(options: ScanOptions | None = None) -> list[Check]:
    checks: list[Check] = [
        SourceMapCheck(),
        SecretCheck(),
        SensitiveFileCheck(),
        VcsMetadataCheck(),
        InstallHookCheck(),
        InternalReferenceCheck(),
        ChangeFacts(),
    ]
    if options is not None:
        # the owner's own context: what is private, what was planted
        matcher = matcher_for(options)
        if matcher is not None:
            checks.append(PrivateSourceCheck(matcher))
        if options.canaries:
            checks.append(CanaryCheck(options.canaries))
    return checks


def comparison_checks() -> list[ComparisonCheck]:
    return [SizeAnomalyCheck(), UnexpectedContentCheck(), ProvenanceCheck(), ChangesCheck()]
