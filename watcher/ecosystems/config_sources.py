"""What every ecosystem's machine-settings reader returns: a registry address, where it came from,
and the credential the machine's tool would send to it. The readers themselves are their units':
`watcher.ecosystems.npm.settings` (.npmrc, scopes, nerf-dart credentials) and
`watcher.ecosystems.pypi.settings` (pip's index setting). No registry host is spelled out in any of
them on purpose: `url: null` means "what the machine's own tool is set to", which also makes
corporate mirrors work.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Credential:
    """How to authenticate to every URL under one registry path (npm's nerf dart)."""

    prefix: str  # "//host[:port]/path/": the key it was found under (or the registry's own)
    scheme: str  # "Bearer" (`_authToken`) or "Basic" (`_auth`, `username` + `_password`)
    value: str = field(repr=False)
    source: str = ""  # file and key, or the config key: for logs, never the value

    @property
    def header(self) -> str:
        return f"{self.scheme} {self.value}"

    @property
    def http_key(self) -> str:
        """The HTTP layer's key: the prefix without its leading `//`, ending in `/`."""
        return with_slash(self.prefix.removeprefix("//"))


@dataclass(frozen=True, slots=True)
class ResolvedRegistry:
    url: str  # always ends with "/"
    source: str  # where the address came from, for logs and error messages
    credential: Credential | None = None

    @property
    def token(self) -> str | None:
        """The bearer token, when the registry's credential is one."""
        cred = self.credential
        return cred.value if cred is not None and cred.scheme == "Bearer" else None


def with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"
