"""The building blocks of configuration sections that the ecosystem units share with
`watcher.config`: the frozen base model, URL fields, and `RegistryConfig`, the base of every
`registries.<name>` section (one per registered ecosystem, each that unit's own model). They live
below both so that dependencies point one way: `config` assembles its schema from the units, the
units define their sections from these.

`RegistryConfig` is what every ecosystem's section has (address, changes feed, poll interval,
timeout); a unit's `section_model` may add keys (npm's `scopes`) and its plan lines. The section
model of the registered units is assembled by `watcher.config.schema.config_model`.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict

from watcher.units import Duration

# Marks a model-level error whose message already holds one `path: problem` per line (the loader
# reports each line on its own).
MULTI_PROBLEMS = "\x00multi\x00"


def check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value


def _optional_url(value: str | None) -> str | None:
    # empty counts as unset, so `${VAR:-}` can leave an optional URL out
    return check_http_url(value) if value else None


Url = Annotated[str, AfterValidator(check_http_url)]
OptionalUrl = Annotated[str | None, AfterValidator(_optional_url)]


def mask_url(url: str) -> str:
    """A URL for display: credentials in it (user:password@) are never shown."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=f"****@{netloc}").geturl()


class SectionModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegistryConfig(SectionModel):
    # null: use what the machine's tool (npm, pip…) is set to (its config files and environment).
    url: OptionalUrl = None
    # set to follow a changes feed (npm CouchDB-style _changes, PyPI changelog); null = poll each package
    changes_url: OptionalUrl = None
    poll_interval: Duration = 30.0
    timeout: Duration = 30.0

    @property
    def mode(self) -> Literal["changes", "poll"]:
        return "changes" if self.changes_url else "poll"

    # -- what a unit's section may add -------------------------------------------------------

    def package_problem(self, name: str, *, pattern: bool) -> str | None:
        """Why a watched name (or pattern) cannot be followed with this section, or None."""
        return None

    def plan_lines(self) -> list[str]:
        """Extra lines under this registry in `watcher check-config`'s plan."""
        return []

    def package_route(self, name: str, how: str) -> str:
        """How one package is followed, for the plan (`how`: the section's default)."""
        return how
