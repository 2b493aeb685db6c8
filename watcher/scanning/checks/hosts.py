"""Is a URL's host something the public should not learn about? Configured internal domains,
private and link-local addresses, and reserved internal TLDs — but not the addresses every cloud
SDK and RFC example uses, which tell nothing about the publisher."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from urllib.parse import urlsplit

_INTERNAL_TLDS = (".internal", ".corp", ".intranet", ".lan", ".home.arpa", ".localdomain")
# Instance metadata and credential endpoints: the same well-known address in every cloud SDK.
_METADATA_HOSTS = frozenset(
    [
        "169.254.169.254",  # AWS, Azure, GCP, OpenStack instance metadata
        "169.254.170.2",  # ECS task credentials
        "169.254.170.23",  # EKS pod identity agent
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
    ]
)
# Addresses set aside for documentation and benchmarks (RFC 5737, 3849, 2544) and the broadcast
# address: examples, never anybody's network.
_EXAMPLE_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "198.18.0.0/15",
        "2001:db8::/32",
        "255.255.255.255/32",
        "0.0.0.0/8",
    )
)


class HostKind(StrEnum):
    CONFIGURED = "configured"  # under one of the team's internal domains
    RESERVED_NAME = "reserved-name"  # a reserved internal TLD
    PRIVATE = "private"  # a private or link-local address
    WELL_KNOWN = "well-known"  # a cloud metadata endpoint: internal, but the same for everyone


@dataclass(frozen=True, slots=True)
class InternalHost:
    kind: HostKind
    reason: str  # a short phrase naming why the host is internal


def host_of(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() if host else None


def classify_host(url: str, internal_domains: tuple[str, ...]) -> InternalHost | None:
    """Why the URL's host is internal, or None when it is public, loopback (which reveals
    nothing) or a documentation example."""
    host = host_of(url)
    if not host:
        return None
    return _classify(host, internal_domains)


@lru_cache(maxsize=8192)
def _classify(host: str, internal_domains: tuple[str, ...]) -> InternalHost | None:
    """Pure in its arguments; bundles name the same few hosts thousands of times."""
    for configured in internal_domains:
        domain = configured.lower().lstrip(".")
        if host == domain or host.endswith("." + domain):
            return InternalHost(HostKind.CONFIGURED, f"internal host {host} (under {domain})")
    if host.strip("[]") in _METADATA_HOSTS:
        return InternalHost(HostKind.WELL_KNOWN, f"cloud metadata endpoint {host}")
    bare = host.strip("[]")
    try:
        if not (bare[:1].isdigit() or ":" in bare):
            raise ValueError(bare)  # a name: skip ipaddress's parse
        address = ipaddress.ip_address(bare)
    except ValueError:
        if host == "localhost.localdomain" or host.endswith(
            (".localhost", ".localhost.localdomain")
        ):
            return None  # loopback names
        if host.endswith(_INTERNAL_TLDS):
            return InternalHost(
                HostKind.RESERVED_NAME, f"internal host {host} (reserved internal name)"
            )
        return None
    if address.is_loopback or address.is_unspecified:
        return None
    if any(
        address in network for network in _EXAMPLE_NETWORKS if network.version == address.version
    ):
        return None
    if address.is_link_local:
        return InternalHost(HostKind.PRIVATE, f"link-local address {host}")
    if address.is_private:
        return InternalHost(HostKind.PRIVATE, f"private address {host}")
    return None


def internal_host_reason(url: str, internal_domains: tuple[str, ...]) -> str | None:
    """A short phrase naming why the URL's host is internal, or None when it is public."""
    found = classify_host(url, internal_domains)
    return found.reason if found else None
