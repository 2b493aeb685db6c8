"""The configuration: `units` (durations, sizes), `schema` (the typed model), `loader` (YAML, env
expansion, key-path errors) and `plan` (what `watcher check-config` prints, secrets masked)."""

from watcher.config.loader import expand_env, load_config, parse_config
from watcher.config.plan import describe_plan
from watcher.config.schema import (
    CHANNEL_KINDS,
    AllowRule,
    Config,
    OwnerConfig,
    PackageConfig,
    RetryPolicy,
    channel_id,
    normalize_name,
)
from watcher.sections import RegistryConfig
from watcher.units import (
    ByteSize,
    Duration,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

__all__ = [
    "CHANNEL_KINDS",
    "AllowRule",
    "ByteSize",
    "Config",
    "Duration",
    "OwnerConfig",
    "PackageConfig",
    "RegistryConfig",
    "RetryPolicy",
    "channel_id",
    "describe_plan",
    "expand_env",
    "format_duration",
    "format_size",
    "load_config",
    "normalize_name",
    "parse_config",
    "parse_duration",
    "parse_size",
]
