"""The one way a secret value is shown anywhere: its first characters, its length and a hash prefix."""

import hashlib

_SHOWN_CHARS = 4


def redact(value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{value[:_SHOWN_CHARS]}…({len(value)} chars, sha256:{digest})"
