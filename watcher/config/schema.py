"""The typed model of the configuration: one frozen pydantic model per section.

Unknown keys are errors, so a typo never passes silently. Secrets are held as `SecretStr` and never
shown: not by repr, not in error messages (see `loader`), not in the plan (see `plan`).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import os
import re
from collections.abc import Sequence
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
    StrictBool,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from watcher import ecosystems
from watcher.intent.model import (
    VERSION_PLACEHOLDER,
    Expectations,
    ProvenanceExpectation,
    TagExpectation,
)
from watcher.model import Ecosystem, Severity
from watcher.private.canaries import Canary
from watcher.private.keys import KEY_ENV
from watcher.scanning.archive import ArchiveLimits
from watcher.scanning.checks.base import ScanOptions
from watcher.sections import (
    MULTI_PROBLEMS,
    OptionalUrl,
    RegistryConfig,
    Url,
    check_http_url,
)
from watcher.units import ByteSize, Duration
from watcher.verify.model import PROVIDER_NAMES, VerifySettings


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------------
# Sections


class StoreConfig(_Model):
    path: Path = Path("./watcher-state.db")
    # `full` fsyncs each commit (a queued page survives power loss); `normal` only survives crashes.
    synchronous: Literal["full", "normal"] = "full"
    # postgresql://user:pass@host:5432/db: the shared store, for several replicas (excludes `path`)
    url: SecretStr | None = None
    # how long a feed leader's, a channel sender's or a scan's lease lasts without renewal
    lease: Duration = 15.0

    @model_validator(mode="after")
    def _engine(self) -> StoreConfig:
        if self.url is None:
            return self
        from watcher.store.postgres.url import is_postgres_url, mask_password  # noqa: PLC0415

        url = self.url.get_secret_value()
        if not is_postgres_url(url):
            raise ValueError(
                f"url: expected postgresql://user:password@host:5432/database, "
                f"got {mask_password(url)!r}"
            )
        if "path" in self.model_fields_set:
            raise ValueError("url: store.url and store.path exclude each other; set one")
        if "synchronous" in self.model_fields_set:
            raise ValueError(
                "synchronous: SQLite-only (store.path); PostgreSQL's durability is the "
                "server's (synchronous_commit)"
            )
        if self.lease < 3:
            raise ValueError("lease: expected at least 3s (leases are renewed every lease/3)")
        return self

    @property
    def database_url(self) -> str | None:
        """The PostgreSQL URL with its password (for the driver only; show `location`)."""
        return None if self.url is None else self.url.get_secret_value()

    @property
    def location(self) -> str:
        """Where the state lives, as logs and messages show it (password masked)."""
        if self.url is None:
            return str(self.path)
        from watcher.store.postgres.url import mask_password  # noqa: PLC0415

        return mask_password(self.url.get_secret_value())


_MIN_API_TOKEN = 16


def _check_listen(value: str) -> str:
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})", value)
    if not match or int(match.group(2)) > 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9464, got {value!r}")
    return value


def _split_listen(value: str) -> tuple[str, int]:
    host, port = value.rsplit(":", 1)
    return host.strip("[]"), int(port)


class ApiTokenConfig(_Model):
    """`server.api_tokens[]`: who may post approvals (`POST /api/v1/approvals`). The token comes
    from `${ENV}`; the service keeps only its SHA-256 and compares in constant time."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")  # who, in the store
    token: SecretStr
    owners: tuple[str, ...] | None = Field(default=None, min_length=1)  # only these owners'...
    packages: tuple[str, ...] | None = Field(default=None, min_length=1)  # ...and these names/globs

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if len(raw) < _MIN_API_TOKEN or any(c.isspace() for c in raw):
            raise ValueError(
                f"expected at least {_MIN_API_TOKEN} characters without whitespace, e.g. "
                "`openssl rand -hex 32` (value hidden)"
            )
        return value


class ServerConfig(_Model):
    listen: str = "127.0.0.1:9464"
    # the approvals API (needs api_tokens); null: served on `listen` beside /metrics
    api_listen: str | None = None
    api_tokens: tuple[ApiTokenConfig, ...] = ()

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value)

    @field_validator("api_listen")
    @classmethod
    def _api_listen(cls, value: str | None) -> str | None:
        return None if value is None else _check_listen(value)

    @model_validator(mode="after")
    def _tokens(self) -> ServerConfig:
        names = [t.name for t in self.api_tokens]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"api_tokens: names must be unique, {', '.join(twice)} used twice")
        values = [t.token.get_secret_value() for t in self.api_tokens]
        if len(set(values)) != len(values):
            raise ValueError("api_tokens: two entries have the same token (values hidden)")
        if self.api_listen is not None and not self.api_tokens:
            raise ValueError("api_listen: set api_tokens too (the API answers only to them)")
        if self.api_listen is not None and _split_listen(self.api_listen) == _split_listen(
            self.listen
        ):
            raise ValueError("api_listen: the same address as listen; leave it out instead")
        return self

    @property
    def api_host(self) -> str:
        return _split_listen(self.api_listen)[0] if self.api_listen else self.host

    @property
    def api_port(self) -> int:
        return _split_listen(self.api_listen)[1] if self.api_listen else self.port

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


class RegistriesConfig(_Model):
    """`registries.<name>`: one section per registered ecosystem, each its unit's own model
    (`config_model` assembles the fields; a section left out takes its model's defaults)."""

    def sections(self) -> dict[Ecosystem, RegistryConfig]:
        """Each registered ecosystem's section, by ecosystem name."""
        found: dict[Ecosystem, RegistryConfig] = {}
        for unit in ecosystems.all_units():
            section = getattr(self, unit.name.value, None)
            found[unit.name] = section if section is not None else unit.section_model()
        return found

    def for_ecosystem(self, ecosystem: Ecosystem) -> RegistryConfig:
        section = getattr(self, ecosystem.value, None)
        if isinstance(section, RegistryConfig):
            return section
        default: RegistryConfig = ecosystems.get(ecosystem).section_model()
        return default


def normalize_name(ecosystem: Ecosystem, name: str) -> str:
    """The name as its ecosystem compares it (PyPI after PEP 503 normalization, npm as it is)."""
    return ecosystems.get(ecosystem).canonical(name)


def _choices(names: Sequence[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _registered_ecosystem(value: object) -> Ecosystem:
    """A registered ecosystem's name (the built-ins and any a plugin registered)."""
    names = [n.value for n in ecosystems.names()]
    if isinstance(value, str) and value in names:
        return Ecosystem(value)
    raise PydanticCustomError("ecosystem", "expected {choices}", {"choices": _choices(names)})


RegisteredEcosystem = Annotated[Ecosystem, PlainValidator(_registered_ecosystem)]


class ExpectTagConfig(_Model):
    """`expect.tag`: the release's tag must exist in a git repository (`git ls-remote --tags`)."""

    repository: str = Field(min_length=1)  # any URL git accepts; credentials go in auth_header
    pattern: str = "v" + VERSION_PLACEHOLDER
    auth_header: SecretStr | None = None  # e.g. "Bearer ${GIT_TOKEN}", for a private repository

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if value != value.strip() or any(c.isspace() for c in value):
            raise ValueError(f"expected a git repository URL without whitespace, got {value!r}")
        if value.startswith("-"):
            raise ValueError(f"expected a git repository URL, got {value!r}")
        if "://" in value and urlsplit(value).password is not None:
            raise ValueError(
                "expected no password in the URL (it would be logged): put the credential in "
                "auth_header, from ${ENV} (value hidden)"
            )
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        rest = value.replace(VERSION_PLACEHOLDER, "")
        if VERSION_PLACEHOLDER not in value or "{" in rest or "}" in rest:
            raise ValueError(f"expected a tag name with one '{{version}}' in it, got {value!r}")
        if any(c.isspace() or c in "~^:?*[\\" for c in rest) or ".." in rest:
            raise ValueError(f"expected a valid git tag name around '{{version}}', got {value!r}")
        if value.startswith(("-", "/")) or value.endswith(("/", ".", ".lock")):
            raise ValueError(f"expected a valid git tag name around '{{version}}', got {value!r}")
        return value

    @field_validator("auth_header")
    @classmethod
    def _auth(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None  # `${VAR:-}` left empty: no header
        if value is not None and any(c in value.get_secret_value() for c in "\r\n"):
            raise ValueError("expected one header value, without line breaks (value hidden)")
        return value

    def expectation(self) -> TagExpectation:
        header = self.auth_header.get_secret_value() if self.auth_header else None
        return TagExpectation(self.repository, self.pattern, header)


class ExpectProvenanceConfig(_Model):
    """`expect.provenance`: the identity a release's provenance attestation must name."""

    repository: str | None = Field(default=None, min_length=1)  # https://github.com/acme/sdk
    workflow: str | None = Field(default=None, min_length=1)  # .github/workflows/release.yml

    @model_validator(mode="after")
    def _some(self) -> ExpectProvenanceConfig:
        if self.repository is None and self.workflow is None:
            raise ValueError("expected a repository, a workflow or both")
        return self

    def expectation(self) -> ProvenanceExpectation:
        return ProvenanceExpectation(self.repository, self.workflow)


EXPECT_KEYS = ("approval", "tag", "publishers", "provenance")


class ExpectConfig(_Model):
    """`expect:` on an owner or a package: what its releases must be. On a package, each key
    set (even to null) overrides the owner's key of the same name; keys left out inherit it."""

    approval: StrictBool | None = None  # true: every artifact needs an approval from the gate
    tag: ExpectTagConfig | None = None
    publishers: tuple[Annotated[str, Field(min_length=1)], ...] | None = Field(
        default=None, min_length=1
    )
    provenance: ExpectProvenanceConfig | None = None

    def over(self, base: ExpectConfig | None) -> ExpectConfig:
        """These keys over `base`'s, key by key (a key this one sets wins, even null)."""
        if base is None:
            return self
        merged = {k: getattr(self if k in self.model_fields_set else base, k) for k in EXPECT_KEYS}
        return ExpectConfig.model_construct(
            _fields_set=self.model_fields_set | base.model_fields_set, **merged
        )

    def expectations(self) -> Expectations:
        return Expectations(
            approval=bool(self.approval),
            tag=self.tag.expectation() if self.tag else None,
            publishers=self.publishers,
            provenance=self.provenance.expectation() if self.provenance else None,
        )


class PackageConfig(_Model):
    ecosystem: RegisteredEcosystem
    name: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    auto_contain: StrictBool = True  # false: automatic containment never acts on this package
    expect: ExpectConfig | None = None  # over the owner's `expect`, key by key

    @model_validator(mode="after")
    def _name(self) -> PackageConfig:
        problem = ecosystems.get(self.ecosystem).check_name(self.name)
        if problem is not None:
            raise ValueError(f"name: {problem}, got {self.name!r}")
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
    url: OptionalUrl = None  # Events API v2 endpoint override (e.g. the EU service region)

    @field_validator("routing_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("expected a non-empty routing key")
        return value


class SlackConfig(_Model):
    """An incoming webhook (`webhook_url`), or a bot token and a channel (`bot_token` +
    `channel`: one message per incident, updates in its thread, edited on resolution)."""

    webhook_url: SecretStr | None = None  # the incoming-webhook URL is itself the credential
    bot_token: SecretStr | None = None  # `xoxb-…` with chat:write
    channel: str | None = Field(default=None, min_length=1)  # the channel id, `C…`
    api_url: OptionalUrl = None  # Slack's Web API base (default https://slack.com/api)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value())
        # plain http only to this host (a local relay or test receiver): the URL is a credential
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
        if not (parts.scheme == "https" or loopback) or not parts.hostname:
            raise ValueError("expected an https incoming-webhook URL (value hidden)")
        return value

    @model_validator(mode="after")
    def _one_way(self) -> SlackConfig:
        bot = self.bot_token is not None or self.channel is not None
        if self.webhook_url is not None and bot:
            raise ValueError("either webhook_url or bot_token + channel, not both")
        if self.webhook_url is None and (self.bot_token is None or self.channel is None):
            raise ValueError("expected webhook_url, or bot_token and channel")
        return self

    @property
    def bot(self) -> bool:
        return self.bot_token is not None


class WebhookConfig(_Model):
    url: Url
    # Standard Webhooks signing secret, `whsec_<base64>` or raw text
    secret: SecretStr
    timeout: Duration = 10.0

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

_MIN_CANARY = 8
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class CanaryConfig(_Model):
    """A value planted in a private place: `{id, value}` (the value from `${ENV}`), or
    `{id, prefix, sha256}` where only a literal prefix is kept and candidates are hashed."""

    id: str = Field(min_length=1)
    value: SecretStr | None = None
    prefix: str | None = None
    sha256: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> CanaryConfig:
        if self.value is not None:
            if self.prefix is not None or self.sha256 is not None:
                raise ValueError("expected either value, or prefix and sha256, not both")
            if len(self.value.get_secret_value()) < _MIN_CANARY:
                raise ValueError(
                    f"value: expected at least {_MIN_CANARY} characters (value hidden)"
                )
        elif self.prefix is None or self.sha256 is None:
            raise ValueError("expected a value, or a prefix and the sha256 of the whole value")
        else:
            if len(self.prefix) < _MIN_CANARY // 2 or any(c.isspace() for c in self.prefix):
                raise ValueError(
                    f"prefix: expected at least {_MIN_CANARY // 2} characters, no whitespace"
                )
            if not _SHA256.fullmatch(self.sha256):
                raise ValueError("sha256: expected 64 hex digits")
        return self

    def canary(self) -> Canary:
        if self.value is not None:
            return Canary(self.id, value=self.value.get_secret_value())
        return Canary(self.id, prefix=self.prefix, sha256=self.sha256)


class InternalNameConfig(_Model):
    """A name that exists only in the owner's private registry: its appearance on the public
    registry's feed is a dependency-confusion or wrong-registry publish."""

    ecosystem: RegisteredEcosystem
    pattern: str = Field(min_length=1)
    owner: str = Field(min_length=1)

    @model_validator(mode="after")
    def _pattern(self) -> InternalNameConfig:
        if ecosystems.get(self.ecosystem).check_name(self.pattern) is not None:
            raise ValueError(
                f"pattern: expected a {self.ecosystem.value} package name or glob, "
                f"got {self.pattern!r}"
            )
        return self

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.pattern for ch in "*?")

    def matches(self, name: str) -> bool:
        own = normalize_name(self.ecosystem, self.pattern)
        other = normalize_name(self.ecosystem, name)
        return fnmatch.fnmatchcase(other, own) if self.is_pattern else own == other


class OwnerConfig(_Model):
    pagerduty: PagerDutyConfig | None = None
    slack: SlackConfig | None = None
    webhook: WebhookConfig | None = None
    console: StrictBool = False
    # this owner's private fingerprint indexes and canaries, for this owner's packages
    fingerprints: tuple[Path, ...] = ()
    canaries: tuple[CanaryConfig, ...] = ()
    expect: ExpectConfig | None = None  # for every package of this owner (a package may override)

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


class AutoNpmConfig(_Model):
    """The write credential and what automatic containment may do on npm."""

    token: SecretStr | None = None  # for the default registry (a granular token with write access)
    scope_tokens: dict[str, SecretStr] = {}  # "@scope" → the token of that scope's own registry
    dist_tag: StrictBool = True  # move dist-tags off the bad version to the previous good one
    deprecate: StrictBool = True  # deprecate the bad version, naming the incident
    unpublish: StrictBool = False  # only when set, and only inside npm's 72-hour window

    @field_validator("scope_tokens")
    @classmethod
    def _scopes(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for scope in value:
            if not re.fullmatch(r"@[a-z0-9][a-z0-9._~-]*", scope):
                raise ValueError(f"expected scope names like '@acme', got {scope!r}")
        return value


class AutoContainmentConfig(_Model):
    """`containment.auto`: act for the owner on a bad release, audited and reversible."""

    at: Severity = Severity.CRITICAL  # the lowest severity whose finding triggers it
    within: Duration = 72 * 3600.0  # only for releases younger than this
    npm: AutoNpmConfig = AutoNpmConfig()
    max_per_hour: int = Field(default=10, ge=1)  # actions per package per hour
    dry_run: StrictBool = False  # record and page what it would do, change nothing
    github_revoke: StrictBool = False  # report leaked GitHub tokens to GitHub for revocation
    github_api_url: OptionalUrl = None  # GitHub Enterprise Server's API base
    github_token: SecretStr | None = None  # GHES only: its revocation endpoint is authenticated


class ContainmentConfig(_Model):
    enabled: StrictBool = True
    check_interval: Duration = 60.0
    auto: AutoContainmentConfig | None = None  # absent: no automatic action


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
    # how long after first sight a release may wait for its approval (`expect.approval`)...
    approval_grace: Duration = 120.0
    # ...and for its tag (`expect.tag`) before it is judged
    tag_grace: Duration = 600.0
    # how long a release's attestations are re-read after first sight before a loss is judged
    attestation_grace: Duration = 600.0


# slotted dataclasses: defaults are read from instances, not class attributes
_ARCHIVE_DEFAULTS = ArchiveLimits()
_SCAN_DEFAULTS = ScanOptions()


class ArchiveLimitsConfig(_Model):
    max_member_bytes: ByteSize = _ARCHIVE_DEFAULTS.max_member_bytes
    max_total_bytes: ByteSize = _ARCHIVE_DEFAULTS.max_total_bytes
    max_members: int = Field(default=_ARCHIVE_DEFAULTS.max_members, gt=0)
    max_ratio: float = Field(default=_ARCHIVE_DEFAULTS.max_ratio, gt=1)
    max_nesting: int = Field(default=_ARCHIVE_DEFAULTS.max_nesting, ge=0)


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
    # downloads in progress; null: `watcher-scratch` beside the state file (cleaned on start)
    scratch_dir: Path | None = None
    # a text counts as a private file when this share of its distinctive lines is there
    fingerprint_threshold: float = Field(default=_SCAN_DEFAULTS.fingerprint_threshold, gt=0, le=1)
    # the key fingerprint indexes are hashed with (null: the WATCHER_FINGERPRINT_KEY variable)
    fingerprint_key: SecretStr | None = None


class VerifyProviderConfig(_Model):
    url: str  # the provider's API base URL (npm: the registry's) that credentials may be sent to

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)


class VerifyConfig(_Model):
    """Opt-in liveness checks of found credentials (watcher.verify): one read-only call to the
    credential's own provider, at its URL here or its documented public API."""

    enabled: StrictBool = False
    timeout: Duration = Field(default=5.0, gt=0)
    rate: float = Field(default=5.0, gt=0)  # calls per second per provider at most
    providers: dict[str, VerifyProviderConfig] = Field(default_factory=dict)
    # tests only: http:// to a loopback address (a local stand-in) is allowed; no other host ever
    insecure_loopback: StrictBool = False

    @model_validator(mode="after")
    def _known_and_tls(self) -> VerifyConfig:
        problems = []
        for name, provider in self.providers.items():
            if name not in PROVIDER_NAMES:
                known = ", ".join(PROVIDER_NAMES)
                problems.append(f"verify.providers.{name}: unknown provider (known: {known})")
                continue
            parts = urlsplit(provider.url)
            loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
            if parts.scheme != "https" and not (self.insecure_loopback and loopback):
                problems.append(
                    f"verify.providers.{name}.url: expected an https URL (a credential is sent there)"
                )
        if problems:
            raise ValueError(MULTI_PROBLEMS + "\n".join(problems))
        return self

    def settings(self) -> VerifySettings:
        return VerifySettings(
            timeout=self.timeout,
            urls={name: p.url for name, p in self.providers.items()},
            rate=self.rate,
            insecure_loopback=self.insecure_loopback,
        )


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
    # what the owners say is private: fingerprint indexes, canaries, internal package names
    fingerprints: tuple[Path, ...] = ()
    canaries: tuple[CanaryConfig, ...] = ()
    internal_names: tuple[InternalNameConfig, ...] = ()
    containment: ContainmentConfig = ContainmentConfig()
    policy: PolicyConfig = PolicyConfig()
    scan: ScanConfig = ScanConfig()
    verify: VerifyConfig = VerifyConfig()
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
            elif problem := registry.package_problem(package.name, pattern=package.is_pattern):
                problems.append(f"{where}.name: {problem}")
        if not self.server.api_tokens:
            wanting = [
                f"owners.{name}.expect.approval"
                for name, owner in self.owners.items()
                if owner.expect is not None and owner.expect.approval
            ] + [
                f"packages[{i}].expect.approval"
                for i, package in enumerate(self.packages)
                if package.expect is not None and package.expect.approval
            ]
            if wanting:
                problems.append(
                    f"{wanting[0]}: approvals are expected but server.api_tokens is empty, so "
                    "the gate cannot post any and every release would page release-unapproved "
                    "(add a token, or set approval: false)"
                )
        for index, token in enumerate(self.server.api_tokens):
            for owner in token.owners or ():
                if owner not in self.owners:
                    problems.append(
                        f"server.api_tokens[{index}].owners: unknown owner {owner!r} (owners "
                        f"defined: {', '.join(sorted(self.owners))})"
                    )
        problems.extend(self._private_problems())
        if problems:
            raise ValueError(MULTI_PROBLEMS + "\n".join(problems))
        return self

    def _private_problems(self) -> list[str]:
        """Indexes readable and keyed with the configured key; canary ids unique; internal
        names' owners defined."""
        from watcher.errors import FingerprintError  # noqa: PLC0415
        from watcher.private.index import read_header  # noqa: PLC0415
        from watcher.private.keys import FingerprintKey  # noqa: PLC0415

        problems = []
        places = [(f"fingerprints[{i}]", p) for i, p in enumerate(self.fingerprints)] + [
            (f"owners.{name}.fingerprints[{i}]", p)
            for name, owner in self.owners.items()
            for i, p in enumerate(owner.fingerprints)
        ]
        key_id = None
        if places:
            secret = self.fingerprint_secret()
            if secret is None:
                problems.append(
                    f"scan.fingerprint_key: fingerprint indexes are configured but no key is "
                    f"set (set it, or the {KEY_ENV} environment variable)"
                )
            else:
                try:
                    key_id = FingerprintKey(secret).id
                except FingerprintError as exc:
                    problems.append(f"scan.fingerprint_key: {exc}")
        for where, path in places:
            try:
                header = read_header(path)
            except FingerprintError as exc:
                problems.append(f"{where}: {exc}")
                continue
            if key_id is not None and header.key_id != key_id:
                problems.append(
                    f"{where}: {path} was built with key id {header.key_id}; the configured "
                    f"key has id {key_id}"
                )
        canary_lists = [("canaries", self.canaries)] + [
            (f"owners.{name}.canaries", owner.canaries) for name, owner in self.owners.items()
        ]
        seen: set[str] = set()
        for where, canaries in canary_lists:
            for i, canary in enumerate(canaries):
                if canary.id in seen:
                    problems.append(f"{where}[{i}].id: canary id {canary.id!r} is used twice")
                seen.add(canary.id)
        for i, entry in enumerate(self.internal_names):
            if entry.owner not in self.owners:
                known = ", ".join(sorted(self.owners))
                problems.append(
                    f"internal_names[{i}].owner: unknown owner {entry.owner!r} (owners defined: "
                    f"{known})"
                )
        return problems

    def fingerprint_secret(self) -> str | None:
        """The fingerprint key's secret: scan.fingerprint_key, else the environment variable."""
        if self.scan.fingerprint_key is not None and self.scan.fingerprint_key.get_secret_value():
            return self.scan.fingerprint_key.get_secret_value()
        return os.environ.get(KEY_ENV) or None

    # -- what the rest of the service asks for ------------------------------------------------

    def scratch_root(self) -> Path:
        """Where the service downloads: its own directory, so a start cleans only what its own
        earlier runs left."""
        return self.scan.scratch_dir or self.store.path.parent / "watcher-scratch"

    def archive_limits(self) -> ArchiveLimits:
        limits = self.scan.limits
        return ArchiveLimits(
            max_member_bytes=limits.max_member_bytes,
            max_total_bytes=limits.max_total_bytes,
            max_members=limits.max_members,
            max_ratio=limits.max_ratio,
            max_nesting=limits.max_nesting,
        )

    def scan_options(self, owner: str | None = None) -> ScanOptions:
        """The checks' options; with `owner`, that owner's fingerprints and canaries too."""
        size = self.scan.size_anomaly
        own = self.owners.get(owner) if owner else None
        fingerprints = (*self.fingerprints, *(own.fingerprints if own else ()))
        canaries = (*self.canaries, *(own.canaries if own else ()))
        return ScanOptions(
            fingerprints=tuple(str(p) for p in fingerprints),
            fingerprint_key=self.fingerprint_secret() if fingerprints else None,
            fingerprint_threshold=self.scan.fingerprint_threshold,
            canaries=tuple(c.canary() for c in canaries),
            internal_domains=tuple(self.policy.internal_domains),
            size_growth_factor=size.growth_factor,
            size_growth_floor_bytes=size.growth_floor,
            file_count_growth_factor=size.file_count_growth_factor,
            file_count_growth_floor=size.file_count_growth_floor,
            keep_credentials=self.verify.enabled,
        )

    def packages_for(self, ecosystem: Ecosystem) -> list[PackageConfig]:
        return [package for package in self.packages if package.ecosystem == ecosystem]

    def owner_of(self, ecosystem: Ecosystem, name: str) -> str | None:
        """The owner of a package: an exact entry wins over a pattern; None if not watched."""
        entry = self.package_entry(ecosystem, name)
        return entry.owner if entry else None

    def package_entry(self, ecosystem: Ecosystem, name: str) -> PackageConfig | None:
        """The entry watching a package: an exact name wins over a pattern; None if not watched."""
        candidates = [p for p in self.packages_for(ecosystem) if p.matches(name)]
        candidates.sort(key=lambda p: (p.is_pattern, -len(p.name)))
        return candidates[0] if candidates else None

    def expectations(self, ecosystem: Ecosystem, name: str) -> Expectations:
        """What a package's releases must be: its entry's `expect` over its owner's, key by key
        (nothing expected of a package that is not watched)."""
        entry = self.package_entry(ecosystem, name)
        if entry is None:
            return Expectations()
        owner = self.owners.get(entry.owner)
        base = owner.expect if owner else None
        if entry.expect is None:
            return base.expectations() if base else Expectations()
        return entry.expect.over(base).expectations()

    def channels(self) -> list[tuple[str, str]]:
        """Every (owner, channel kind) pair pages may go to."""
        return [(owner, kind) for owner, cfg in self.owners.items() for kind in cfg.channel_kinds()]


def config_model() -> type[Config]:
    """`Config` with one `registries.<name>` section per registered ecosystem (its unit's model):
    what the loader validates against. Built once per set of registered units."""
    units = tuple((u.name.value, u.section_model) for u in ecosystems.all_units())
    return _config_model(units)


@cache
def _config_model(units: tuple[tuple[str, type[RegistryConfig]], ...]) -> type[Config]:
    fields: dict[str, Any] = {name: (model, model()) for name, model in units}
    registries = create_model("RegistriesConfig", __base__=RegistriesConfig, **fields)
    return create_model("Config", __base__=Config, registries=(registries, registries()))
