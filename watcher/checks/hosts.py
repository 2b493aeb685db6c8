"""Is a URL's host something the public should not learn about? Configured internal domains,
private and link-local addresses, and reserved internal TLDs."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_INTERNAL_TLDS = (".internal", ".corp", ".intranet", ".lan", ".home.arpa", ".localdomain")


def host_of(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() if host else None


def internal_host_reason(url: str, internal_domains: tuple[str, ...]) -> str | None:
    """A short phrase naming why the URL's host is internal, or None when it is public (or
    loopback, which reveals nothing)."""
    host = host_of(url)
    if not host:
        return None
    for configured in internal_domains:
        domain = configured.lower().lstrip(".")
        if host == domain or host.endswith("." + domain):
            return f"internal host {host} (under {domain})"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host.endswith(_INTERNAL_TLDS):
            return f"internal host {host} (reserved internal name)"
        return None
    if address.is_loopback or address.is_unspecified:
        return None
    if address.is_link_local:
        return f"link-local address {host}"
    if address.is_private:
        return f"private address {host}"
    return None
