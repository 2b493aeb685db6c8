"""One typed model of the YAML configuration.

Loading is three steps: YAML (duplicate keys are errors), `${VAR}` / `${VAR:-default}` expansion from
the environment, then pydantic validation. Every problem found is reported at once, each line naming
its key path and what was expected (`packages[2].ecosystem: expected 'npm' or 'pypi', got
'rubygems'`). Unknown keys are errors, so a typo never passes silently. Secrets are held as
`SecretStr` and never shown: not by repr, not in error messages, not in `describe_plan`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import fnmatch
import os
import re
import types
from collections.abc import Callable, Iterator, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from watcher.ecosystems.config_sources import NpmScopeSetting
from watcher.errors import ConfigError
from watcher.model import Ecosystem, Severity
from watcher.scanning.archive import ArchiveLimits
from watcher.scanning.checks.base import ScanOptions

# --------------------------------------------------------------------------------------------------
# Scalar types: durations and byte sizes


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_HINT = "a duration like 30s, 5m, 1h, 1h30m or 500ms"


def parse_duration(value: object) -> float:
    """`30s`, `5m`, `1h30m`, `500ms`, `2d` or a bare number of seconds → seconds (float, > 0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected {_DURATION_HINT}, got {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", text):
            seconds = sum(
                float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text)
            )
        else:
            raise ValueError(f"expected {_DURATION_HINT}, got {value!r}")
    else:
        raise ValueError(f"expected {_DURATION_HINT}, got a {type(value).__name__}")
    if not seconds > 0:
        raise ValueError(f"expected a positive duration ({_DURATION_HINT}), got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse of `parse_duration` for display: 90 → `1m30s`, 0.5 → `500ms`."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(value: object) -> int:
    """`256MiB`, `2GiB`, `10MB`, `512` (bytes) → bytes (int, > 0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 256MiB or 10MB, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        unit = (match.group(2) or "b").lower()
        size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ValueError(f"expected a size like 256MiB or 10MB, got {value!r}")
    if size <= 0:
        raise ValueError(f"expected a positive size, got {value!r}")
    return size


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value


def _mask_url(url: str) -> str:
    """A URL for display: credentials in it (user:password@) are never shown."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=f"****@{netloc}").geturl()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------------
# Sections


class StoreConfig(_Model):
    path: Path = Path("./watcher-state.db")
    # `full` fsyncs each commit (a queued page survives power loss); `normal` only survives crashes.
    synchronous: Literal["full", "normal"] = "full"


class ServerConfig(_Model):
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})", value)
        if not match or int(match.group(2)) > 65535:
            raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9464, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


class RegistryConfig(_Model):
    # null: use what the machine's npm / pip are set to (their config files and environment).
    url: str | None = None
    # set to follow a changes feed (npm CouchDB-style _changes, PyPI changelog); null = poll each package
    changes_url: str | None = None
    poll_interval: Duration = 30.0
    timeout: Duration = 30.0

    @field_validator("url", "changes_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        # empty counts as unset, so `${VAR:-}` can leave an optional URL out
        return _check_http_url(value) if value else None

    @property
    def mode(self) -> Literal["changes", "poll"]:
        return "changes" if self.changes_url else "poll"


class PypiRegistryConfig(RegistryConfig):
    poll_interval: Duration = 60.0


_SCOPE_NAME = re.compile(r"@[a-z0-9][a-z0-9._~-]*")


class NpmScopeConfig(_Model):
    """One npm scope served by its own registry (GitHub Packages, Artifactory, Verdaccio)."""

    url: str
    # null: the machine's .npmrc credential for this registry (`//host/path/:_authToken=`)
    token: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        # empty counts as unset, so `${VAR:-}` can leave the token to the machine's .npmrc
        return value if value is not None and value.get_secret_value().strip() else None


class NpmRegistryConfig(RegistryConfig):
    # `@scope` → its registry; other scopes follow the machine's `@scope:registry` settings
    scopes: dict[str, NpmScopeConfig] = {}

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
                    f"the same registry {_mask_url(entry.url)}; one registry URL takes one token"
                )
        if problems:
            raise ValueError(_MULTI + "\n".join(problems))
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


class RegistriesConfig(_Model):
    npm: NpmRegistryConfig = NpmRegistryConfig()
    pypi: PypiRegistryConfig = PypiRegistryConfig()

    def for_ecosystem(self, ecosystem: Ecosystem) -> RegistryConfig:
        return self.npm if ecosystem is Ecosystem.NPM else self.pypi


_NPM_NAME = re.compile(r"(@[A-Za-z0-9][A-Za-z0-9._~*?-]*/)?[A-Za-z0-9*?][A-Za-z0-9._~*?-]*")
_PYPI_NAME = re.compile(r"[A-Za-z0-9*?]([A-Za-z0-9._*?-]*[A-Za-z0-9*?])?")


def normalize_name(ecosystem: Ecosystem, name: str) -> str:
    """PyPI names compare after PEP 503 normalization; npm names as they are."""
    if ecosystem is Ecosystem.PYPI:
        return re.sub(r"[-_.]+", "-", name).lower()
    return name


class PackageConfig(_Model):
    ecosystem: Ecosystem
    name: str = Field(min_length=1)
    owner: str = Field(min_length=1)

    @model_validator(mode="after")
    def _name(self) -> PackageConfig:
        pattern = _NPM_NAME if self.ecosystem is Ecosystem.NPM else _PYPI_NAME
        if not pattern.fullmatch(self.name):
            raise ValueError(
                f"name: expected a valid {self.ecosystem.value} package name or pattern, "
                f"got {self.name!r}"
            )
        return self

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.name for ch in "*?")

    def matches(self, name: str) -> bool:
        own = normalize_name(self.ecosystem, self.name)
        other = normalize_name(self.ecosystem, name)
        return fnmatch.fnmatchcase(other, own) if self.is_pattern else own == other


class PagerDutyConfig(_Model):
    routing_key: SecretStr
    url: str | None = None  # Events API v2 endpoint override (e.g. the EU service region)

    @field_validator("routing_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("expected a non-empty routing key")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        # empty counts as unset, so `${VAR:-}` can leave an optional URL out
        return _check_http_url(value) if value else None


class SlackConfig(_Model):
    webhook_url: SecretStr  # the incoming-webhook URL is itself the credential

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        # plain http only to this host (a local relay or test receiver): the URL is a credential
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
        if not (parts.scheme == "https" or loopback) or not parts.hostname:
            raise ValueError("expected an https incoming-webhook URL (value hidden)")
        return value


class WebhookConfig(_Model):
    url: str
    # Standard Webhooks signing secret, `whsec_<base64>` or raw text
    secret: SecretStr
    timeout: Duration = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not raw:
            raise ValueError("expected a non-empty signing secret")
        if raw.startswith("whsec_"):
            try:
                base64.b64decode(raw.removeprefix("whsec_"), validate=True)
            except binascii.Error:
                raise ValueError("expected base64 after 'whsec_' (value hidden)") from None
        return value


CHANNEL_KINDS = ("pagerduty", "slack", "webhook", "console")


class OwnerConfig(_Model):
    pagerduty: PagerDutyConfig | None = None
    slack: SlackConfig | None = None
    webhook: WebhookConfig | None = None
    console: bool = False

    @model_validator(mode="after")
    def _some_channel(self) -> OwnerConfig:
        if not self.channel_kinds():
            raise ValueError(
                "expected at least one channel (pagerduty, slack, webhook or console: true)"
            )
        return self

    def channel_kinds(self) -> list[str]:
        kinds = [kind for kind in ("pagerduty", "slack", "webhook") if getattr(self, kind)]
        return [*kinds, "console"] if self.console else kinds


def channel_id(owner: str, kind: str) -> str:
    """The outbox's name for one owner's channel: pages are ordered per channel id."""
    return f"{owner}/{kind}"


class ContainmentConfig(_Model):
    enabled: bool = True
    check_interval: Duration = 60.0


class AllowRule(_Model):
    package: str = Field(min_length=1)  # name or glob (`@acme/*`)
    rule: str = Field(min_length=1)  # rule id or glob (`*`)
    path: str = "*"  # glob over the finding's path
    reason: str
    expires: date

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected a reason saying why this is allowed")
        return value

    def active_on(self, day: date) -> bool:
        return day < self.expires

    def matches(self, package: str, rule: str, path: str) -> bool:
        return (
            fnmatch.fnmatchcase(package, self.package)
            and fnmatch.fnmatchcase(rule, self.rule)
            and fnmatch.fnmatchcase(path, self.path)
        )


class PolicyConfig(_Model):
    page_at: Severity = Severity.HIGH
    internal_domains: tuple[str, ...] = ()
    allow: tuple[AllowRule, ...] = ()


# slotted dataclasses: defaults are read from instances, not class attributes
_ARCHIVE_DEFAULTS = ArchiveLimits()
_SCAN_DEFAULTS = ScanOptions()


class ArchiveLimitsConfig(_Model):
    max_member_bytes: ByteSize = _ARCHIVE_DEFAULTS.max_member_bytes
    max_total_bytes: ByteSize = _ARCHIVE_DEFAULTS.max_total_bytes
    max_members: int = Field(default=_ARCHIVE_DEFAULTS.max_members, gt=0)
    max_ratio: float = Field(default=_ARCHIVE_DEFAULTS.max_ratio, gt=1)


class SizeAnomalyConfig(_Model):
    growth_factor: float = Field(default=_SCAN_DEFAULTS.size_growth_factor, gt=1)
    growth_floor: ByteSize = _SCAN_DEFAULTS.size_growth_floor_bytes
    file_count_growth_factor: float = Field(default=_SCAN_DEFAULTS.file_count_growth_factor, gt=1)
    file_count_growth_floor: int = Field(default=_SCAN_DEFAULTS.file_count_growth_floor, gt=0)


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class ScanConfig(_Model):
    workers: int = Field(default_factory=_default_workers, gt=0)  # processes in the scan pool
    concurrency: int = Field(default=4, gt=0)  # releases downloaded and scanned at once
    download_timeout: Duration = 300.0
    max_download_bytes: ByteSize = 2 * 1024**3
    limits: ArchiveLimitsConfig = ArchiveLimitsConfig()
    size_anomaly: SizeAnomalyConfig = SizeAnomalyConfig()


class RetryPolicy(_Model):
    """Exponential backoff with jitter; gives up after `max_attempts` and/or `give_up_after`."""

    initial: Duration = 5.0
    max: Duration = 600.0
    multiplier: float = Field(default=2.0, ge=1)
    jitter: float = Field(default=0.2, ge=0, le=1)  # ± this fraction of the delay
    max_attempts: int | None = Field(default=None, gt=0)
    give_up_after: Duration | None = None

    @model_validator(mode="after")
    def _bounded(self) -> RetryPolicy:
        if self.max < self.initial:
            raise ValueError("max: expected a delay at least as long as initial")
        return self

    def delay(self, attempt: int, rand: float = 0.5) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based); `rand` in [0, 1)."""
        base = min(self.max, self.initial * self.multiplier ** max(0, attempt - 1))
        return float(max(0.0, base * (1 + self.jitter * (2 * rand - 1))))

    def exhausted(self, attempts: int, age_s: float) -> bool:
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return True
        return self.give_up_after is not None and age_s >= self.give_up_after


class RetryConfig(_Model):
    scan: RetryPolicy = RetryPolicy(initial=10.0, max=1800.0, max_attempts=6)
    # a channel down for hours still gets every page once it is back
    outbox: RetryPolicy = RetryPolicy(initial=1.0, max=60.0, give_up_after=86400.0)


class OutboxConfig(_Model):
    # a channel whose endpoint said it is gone (410, Slack `channel_is_archived`) is tried again
    # after this; `watcher outbox requeue --channel NAME` enables it at once
    disabled_recheck: Duration = Field(default=3600.0, gt=0)


class ShutdownConfig(_Model):
    grace_period: Duration = 30.0


class LogConfig(_Model):
    format: Literal["auto", "json", "console"] = "auto"  # auto: console on a TTY, JSON otherwise
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Model):
    store: StoreConfig = StoreConfig()
    server: ServerConfig = ServerConfig()
    registries: RegistriesConfig = RegistriesConfig()
    packages: tuple[PackageConfig, ...] = Field(min_length=1)
    owners: dict[str, OwnerConfig] = Field(min_length=1)
    containment: ContainmentConfig = ContainmentConfig()
    policy: PolicyConfig = PolicyConfig()
    scan: ScanConfig = ScanConfig()
    retry: RetryConfig = RetryConfig()
    outbox: OutboxConfig = OutboxConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems = []
        for name in self.owners:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                problems.append(
                    f"owners.{name}: expected an owner name of letters, digits, '.', '_', '-'"
                )
        seen: dict[tuple[Ecosystem, str], int] = {}
        for index, package in enumerate(self.packages):
            where = f"packages[{index}]"
            if package.owner not in self.owners:
                known = ", ".join(sorted(self.owners))
                problems.append(
                    f"{where}.owner: unknown owner {package.owner!r} (owners defined: {known})"
                )
            key = (package.ecosystem, normalize_name(package.ecosystem, package.name))
            if key in seen:
                problems.append(
                    f"{where}.name: {package.name!r} is already listed at packages[{seen[key]}]"
                )
            seen.setdefault(key, index)
            registry = self.registries.for_ecosystem(package.ecosystem)
            if package.is_pattern and registry.mode != "changes":
                problems.append(
                    f"{where}.name: pattern {package.name!r} needs a changes feed: set "
                    f"registries.{package.ecosystem.value}.changes_url (poll mode watches named "
                    "packages only)"
                )
            elif package.is_pattern and package.ecosystem is Ecosystem.NPM:
                npm = self.registries.npm
                scope = npm.scope_of(package.name)
                if scope is not None and npm.off_default(scope):
                    problems.append(
                        f"{where}.name: pattern {package.name!r} is on the {scope} registry "
                        f"(registries.npm.scopes.{scope}), which the changes feed does not "
                        "cover: list its packages by name, they are polled"
                    )
        if problems:
            raise ValueError(_MULTI + "\n".join(problems))
        return self

    # -- what the rest of the service asks for ------------------------------------------------

    def archive_limits(self) -> ArchiveLimits:
        limits = self.scan.limits
        return ArchiveLimits(
            max_member_bytes=limits.max_member_bytes,
            max_total_bytes=limits.max_total_bytes,
            max_members=limits.max_members,
            max_ratio=limits.max_ratio,
        )

    def scan_options(self) -> ScanOptions:
        size = self.scan.size_anomaly
        return ScanOptions(
            internal_domains=tuple(self.policy.internal_domains),
            size_growth_factor=size.growth_factor,
            size_growth_floor_bytes=size.growth_floor,
            file_count_growth_factor=size.file_count_growth_factor,
            file_count_growth_floor=size.file_count_growth_floor,
        )

    def packages_for(self, ecosystem: Ecosystem) -> list[PackageConfig]:
        return [package for package in self.packages if package.ecosystem is ecosystem]

    def owner_of(self, ecosystem: Ecosystem, name: str) -> str | None:
        """The owner of a package: an exact entry wins over a pattern; None if not watched."""
        candidates = [p for p in self.packages_for(ecosystem) if p.matches(name)]
        candidates.sort(key=lambda p: (p.is_pattern, -len(p.name)))
        return candidates[0].owner if candidates else None

    def channels(self) -> list[tuple[str, str]]:
        """Every (owner, channel kind) pair pages may go to."""
        return [(owner, kind) for owner, cfg in self.owners.items() for kind in cfg.channel_kinds()]


# Marks a model-level error whose message already holds one `path: problem` per line.
_MULTI = "\x00multi\x00"


# --------------------------------------------------------------------------------------------------
# Loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, except a key given twice in one mapping is an error instead of last-wins."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _format_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def expand_env(
    data: object, env: Mapping[str, str], path: tuple[str | int, ...] = ()
) -> tuple[object, list[str]]:
    """Expand `${VAR}` / `${VAR:-default}` in every string of a parsed YAML tree (`$$` is a literal
    `$`). As in a shell, `:-` uses the default when the variable is unset or empty."""
    problems: list[str] = []
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            out[key], sub = expand_env(value, env, (*path, str(key)))
            problems += sub
        return out, problems
    if isinstance(data, list):
        items = []
        for index, value in enumerate(data):
            item, sub = expand_env(value, env, (*path, index))
            items.append(item)
            problems += sub
        return items, problems
    if not isinstance(data, str) or "$" not in data:
        return data, problems

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            problems.append(
                f"{_format_path(path)}: environment variable {name} is not set "
                f"(write ${{{name}:-default}} to give a default)"
            )
            return ""
        return value

    return _VAR.sub(replace, data), problems


def _strip_type(tp: Any) -> Any:
    """Unwrap Annotated[...] and X | None down to X."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [arg for arg in get_args(tp) if arg is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _type_at(loc: tuple[str | int, ...]) -> Any:
    """The declared type at a key path of the configuration (None where unknown)."""
    tp: Any = Config
    for part in loc:
        tp = _strip_type(tp)
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif origin in (list, tuple):
            tp = get_args(tp)[0]
        elif origin is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return _strip_type(tp)


def _show(value: object, secret: bool) -> str:
    if secret:
        return "<hidden>"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_error(error: Mapping[str, Any]) -> Iterator[str]:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    message: str = error["msg"]
    kind: str = error["type"]
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
        if message.startswith(_MULTI):
            yield from message.removeprefix(_MULTI).splitlines()
            return
        # a model-level validator names the offending key at the start of its message
        if re.match(r"[a-z_]+: ", message):
            key, _, message = message.partition(": ")
            loc = (*loc, key)
        yield f"{_format_path(loc)}: {message}"
        return
    path = _format_path(loc)
    if kind == "missing":
        yield f"{path}: required key missing"
        return
    if kind == "too_short":
        count = error.get("ctx", {}).get("min_length", 1)
        yield f"{path}: expected at least {count} entr{'y' if count == 1 else 'ies'}"
        return
    if kind == "extra_forbidden":
        parent = _type_at(loc[:-1])
        known = (
            list(parent.model_fields)
            if isinstance(parent, type) and issubclass(parent, BaseModel)
            else []
        )
        hint = ""
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        if close:
            hint = f"; did you mean {close[0]!r}?"
        elif known:
            hint = f" (expected one of: {', '.join(known)})"
        yield f"{path}: unknown key{hint}"
        return
    secret = _type_at(loc) is SecretStr
    if message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
    else:
        message = message[:1].lower() + message[1:]
    yield f"{path}: {message}, got {_show(error.get('input'), secret)}"


def parse_config(
    text: str, *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate a YAML document into a `Config`, or raise ConfigError listing every problem."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {_show(data, False)}"
        )
    data, problems = expand_env(data, os.environ if env is None else env)
    # a key whose variable is unset is reported once, not again as an empty value
    unset = {line.partition(": ")[0] for line in problems}
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # a list whose entries are invalid is also "too short" after validation: say it once
        failing = {tuple(e["loc"][:n]) for e in errors for n in range(1, len(e["loc"]))}
        for error in errors:
            loc = tuple(error["loc"])
            if error["type"] == "too_short" and loc in failing:
                continue
            if _format_path(loc) not in unset:
                problems.extend(_describe_error(error))
    if problems or config is None:
        count = len(problems)
        lines = "\n".join(f"  {line}" for line in problems)
        raise ConfigError(
            f"{source}: {count} configuration error{'s' if count != 1 else ''}:\n{lines}"
        )
    return config


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
    return parse_config(text, source=str(path), env=env)


# --------------------------------------------------------------------------------------------------
# The plan, as `watcher check-config` prints it


_HIDDEN = "****"


def _channel_line(kind: str, owner: OwnerConfig) -> str:
    if kind == "pagerduty" and owner.pagerduty:
        where = _mask_url(owner.pagerduty.url) if owner.pagerduty.url else "default endpoint"
        return f"pagerduty (Events API v2, {where}, routing_key {_HIDDEN})"
    if kind == "slack" and owner.slack:
        return f"slack (incoming webhook, webhook_url {_HIDDEN})"
    if kind == "webhook" and owner.webhook:
        return (
            f"webhook (POST {_mask_url(owner.webhook.url)}, Standard Webhooks signature, "
            f"secret {_HIDDEN}, timeout {format_duration(owner.webhook.timeout)})"
        )
    return "console (stdout + log event)"


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
        lines.append(f"    {scope}/*: {_mask_url(entry.url)}; {token}; {how}")
    lines.append(
        "    other scopes: the machine's npm `@scope:registry` settings, else the default registry"
    )
    return lines


def _retry_line(policy: RetryPolicy) -> str:
    limits = []
    if policy.max_attempts is not None:
        limits.append(f"{policy.max_attempts} attempts")
    if policy.give_up_after is not None:
        limits.append(f"{format_duration(policy.give_up_after)}")
    until = " or ".join(limits) if limits else "forever"
    return (
        f"backoff {format_duration(policy.initial)} x{policy.multiplier:g} up to "
        f"{format_duration(policy.max)} (±{policy.jitter:.0%} jitter), gives up after {until}"
    )


def describe_plan(config: Config, *, today: date | None = None) -> str:
    """What the service will do with this configuration, secrets masked."""
    today = today or date.today()
    lines: list[str] = []
    add: Callable[[str], None] = lines.append
    add(
        f"store: {config.store.path} ({config.store.path.absolute()}; SQLite, WAL, "
        f"synchronous={config.store.synchronous})"
    )
    add(f"server: http://{config.server.listen} (/metrics /healthz /readyz)")
    add("registries:")
    for eco in Ecosystem:
        reg = config.registries.for_ecosystem(eco)
        url = (
            _mask_url(reg.url)
            if reg.url
            else f"the machine's {'npm' if eco is Ecosystem.NPM else 'pip'} setting"
        )
        how = (
            f"follow changes feed {_mask_url(reg.changes_url)}"
            if reg.changes_url
            else f"poll each package every {format_duration(reg.poll_interval)}"
        )
        add(f"  {eco.value}: {url}; {how}; timeout {format_duration(reg.timeout)}")
        if eco is Ecosystem.NPM:
            lines.extend(_scope_lines(config.registries.npm))
    add(
        f"watching {len(config.packages)} package entr{'y' if len(config.packages) == 1 else 'ies'}:"
    )
    width = max(len(p.name) for p in config.packages)
    for package in config.packages:
        reg = config.registries.for_ecosystem(package.ecosystem)
        how = (
            "changes feed"
            if reg.mode == "changes"
            else f"poll {format_duration(reg.poll_interval)}"
        )
        scope = config.registries.npm.scope_of(package.name)
        if package.ecosystem is Ecosystem.NPM and scope is not None:
            polled = config.registries.npm.off_default(scope) or reg.mode != "changes"
            how = f"{f'poll {format_duration(reg.poll_interval)}' if polled else how} via {scope}"
        kind = " (pattern)" if package.is_pattern else ""
        add(
            f"  {package.ecosystem.value:<4} {package.name:<{width}}  owner {package.owner}; "
            f"{how}{kind}"
        )
    add("owners and channels (pages delivered through a durable outbox):")
    for name, owner in config.owners.items():
        add(f"  {name}:")
        for kind in owner.channel_kinds():
            add(f"    - {_channel_line(kind, owner)}")
    policy = config.policy
    add(f"policy: page at {policy.page_at.value} and above")
    if policy.internal_domains:
        add(f"  internal domains: {', '.join(policy.internal_domains)}")
    for rule in policy.allow:
        status = "active" if rule.active_on(today) else "EXPIRED, not applied"
        add(
            f"  allow {rule.rule} in {rule.package} at {rule.path} until {rule.expires} "
            f"({status}): {rule.reason}"
        )
    scan = config.scan
    limits = scan.limits
    add(
        f"scan: {scan.workers} worker process(es), {scan.concurrency} release(s) at once, "
        f"download timeout {format_duration(scan.download_timeout)}, "
        f"max download {format_size(scan.max_download_bytes)}"
    )
    add(
        f"  archive limits: member {format_size(limits.max_member_bytes)}, total "
        f"{format_size(limits.max_total_bytes)}, {limits.max_members} members, ratio "
        f"{limits.max_ratio:g}"
    )
    add(f"  scan retries: {_retry_line(config.retry.scan)}")
    add(f"  delivery retries: {_retry_line(config.retry.outbox)}")
    add(
        "  a channel disabled by its endpoint is tried again after "
        f"{format_duration(config.outbox.disabled_recheck)}"
    )
    if config.containment.enabled:
        add(
            "containment: re-read open incidents every "
            f"{format_duration(config.containment.check_interval)}"
        )
    else:
        add("containment: disabled (incidents are resolved by hand)")
    add(
        f"shutdown grace period {format_duration(config.shutdown.grace_period)}; "
        f"log format {config.log.format}, level {config.log.level}"
    )
    return "\n".join(lines)
