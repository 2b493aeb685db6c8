"""`registries.npm`: the default registry (null: the machine's npm settings), its changes feed, and
`scopes`: `@scope` → its own registry and token, so a private scope's token only goes there."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from watcher.ecosystems.npm.settings import NpmScopeSetting
from watcher.sections import (
    MULTI_PROBLEMS,
    RegistryConfig,
    SectionModel,
    check_http_url,
    mask_url,
)
from watcher.units import format_duration

_HIDDEN = "****"
_SCOPE_NAME = re.compile(r"@[a-z0-9][a-z0-9._~-]*")


class NpmScopeConfig(SectionModel):
    """One npm scope served by its own registry (GitHub Packages, Artifactory, Verdaccio)."""

    url: str
    # null: the machine's .npmrc credential for this registry (`//host/path/:_authToken=`)
    token: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        # empty counts as unset, so `${VAR:-}` can leave the token to the machine's .npmrc
        return value if value is not None and value.get_secret_value().strip() else None


class NpmRegistryConfig(RegistryConfig):
    # `@scope` → its registry; other scopes follow the machine's `@scope:registry` settings
    scopes: dict[str, NpmScopeConfig] = Field(default_factory=dict)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: dict[str, NpmScopeConfig]) -> dict[str, NpmScopeConfig]:
        problems = [
            f"registries.npm.scopes.{scope}: expected a lowercase npm scope such as '@acme'"
            for scope in value
            if not _SCOPE_NAME.fullmatch(scope)
        ]
        by_url: dict[str, tuple[str, SecretStr]] = {}
        for scope, entry in value.items():
            if entry.token is None:
                continue
            url = entry.url if entry.url.endswith("/") else entry.url + "/"
            other = by_url.setdefault(url, (scope, entry.token))
            if other[1].get_secret_value() != entry.token.get_secret_value():
                problems.append(
                    f"registries.npm.scopes.{scope}.token: differs from {other[0]}'s token for "
                    f"the same registry {mask_url(entry.url)}; one registry URL takes one token"
                )
        if problems:
            raise ValueError(MULTI_PROBLEMS + "\n".join(problems))
        return value

    def scope_of(self, name: str) -> str | None:
        """The configured scope that serves package `name`, if any."""
        scope = name.split("/", 1)[0] if name.startswith("@") and "/" in name else None
        return scope if scope in self.scopes else None

    def off_default(self, scope: str) -> bool:
        """Whether a configured scope is served by another registry than the default one (then
        it is polled: a changes feed only follows the default registry)."""
        url = self.scopes[scope].url.rstrip("/")
        return self.url is None or url != self.url.rstrip("/")

    def scope_settings(self) -> dict[str, NpmScopeSetting]:
        return {
            scope: NpmScopeSetting(
                entry.url, entry.token.get_secret_value() if entry.token else None
            )
            for scope, entry in self.scopes.items()
        }

    def package_problem(self, name: str, *, pattern: bool) -> str | None:
        scope = self.scope_of(name)
        if pattern and scope is not None and self.off_default(scope):
            return (
                f"pattern {name!r} is on the {scope} registry (registries.npm.scopes.{scope}), "
                "which the changes feed does not cover: list its packages by name, they are polled"
            )
        return None

    def plan_lines(self) -> list[str]:
        return _scope_lines(self)

    def package_route(self, name: str, how: str) -> str:
        scope = self.scope_of(name)
        if scope is None:
            return how
        polled = self.off_default(scope) or self.mode != "changes"
        return f"{f'poll {format_duration(self.poll_interval)}' if polled else how} via {scope}"


def _scope_lines(npm: NpmRegistryConfig) -> list[str]:
    lines = []
    for scope, entry in sorted(npm.scopes.items()):
        token = (
            f"token {_HIDDEN}"
            if entry.token is not None
            else "token from the machine's .npmrc for this registry, if any"
        )
        how = (
            f"polled every {format_duration(npm.poll_interval)}"
            + (" (the changes feed covers the default registry only)" if npm.changes_url else "")
            if npm.off_default(scope)
            else "same registry as the default"
        )
        lines.append(f"    {scope}/*: {mask_url(entry.url)}; {token}; {how}")
    lines.append(
        "    other scopes: the machine's npm `@scope:registry` settings, else the default registry"
    )
    return lines
