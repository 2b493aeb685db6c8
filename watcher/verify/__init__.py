"""Opt-in, read-only liveness checks of found credentials with their own providers (issue 16).

`engine.CredentialVerifier` does the calls, `providers` holds one verifier per provider, `model`
the verdicts and settings (light: the configuration imports it)."""
