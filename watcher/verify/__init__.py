"""Opt-in, read-only liveness checks of found credentials with their own providers (issue 16)."""

from watcher.verify.engine import CredentialVerifier, apply_outcome
from watcher.verify.model import Outcome, Verdict, VerifySettings
from watcher.verify.providers import PROVIDERS, Probe, Provider

__all__ = [
    "PROVIDERS",
    "CredentialVerifier",
    "Outcome",
    "Probe",
    "Provider",
    "Verdict",
    "VerifySettings",
    "apply_outcome",
]
