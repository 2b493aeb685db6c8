"""The small exception hierarchy the CLI maps to exit codes and one-line messages."""


class WatcherError(Exception):
    """Base of every error this package raises on purpose."""


class ArchiveError(WatcherError):
    """The input is not an archive we can read at all (missing, unknown format, unreadable)."""


class ConfigError(WatcherError):
    """The configuration is invalid; the message names the key path and what was expected."""


class RegistryError(WatcherError):
    """A registry answered with something that will not heal by retrying (404, 401, bad JSON)."""


class IntegrityError(RegistryError):
    """A downloaded file does not match the digest the registry published for it."""


class DeliveryError(WatcherError):
    """A channel refused a page."""


class ServiceFailed(WatcherError):
    """`watcher run` stopped because something failed, not because it was asked to: the message
    is the first cause. The CLI exits non-zero so a supervisor restarts it."""


class FingerprintError(WatcherError):
    """A fingerprint index cannot be built or used (unreadable, wrong version, wrong key)."""
