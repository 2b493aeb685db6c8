"""A PostgreSQL URL as it may be shown: the password masked (logs, errors, `check-config`)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "***"


def mask_password(url: str) -> str:
    """`postgresql://user:secret@host/db` → `postgresql://user:***@host/db` (the rest as is)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable store.url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{user}:{MASK}@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme in ("postgresql", "postgres")
