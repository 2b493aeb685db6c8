"""Verification latency per provider, against the local provider stand-in.

Starts tests/provider_standins.py on loopback, builds `--n` fake credentials per provider (half of
them known to the stand-in as live), verifies them with `CredentialVerifier` and prints, per
provider, calls made and the latency of one verification (p50 / p95 / max, milliseconds) — the cost
of our side (request building, SigV4 signing for AWS, TLS-less loopback HTTP, answer parsing, the
rate limiter at `--rate`), not of the real providers' networks. Figures only; nothing asserted.

    .venv/bin/python bench/verify_bench.py [--n 50] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import time
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import fakecreds  # noqa: E402
from provider_standins import PROVIDERS, provider_standin  # noqa: E402

from watcher.model import Category, Credential, Finding, Severity  # noqa: E402
from watcher.verify.engine import CredentialVerifier  # noqa: E402
from watcher.verify.model import VerifySettings  # noqa: E402


def credential(provider: str, rng: random.Random) -> Credential:
    a, u = fakecreds.ALNUM, fakecreds.URLSAFE
    companion = None
    values = {
        "github": lambda: fakecreds.github_token(rng),
        "gitlab": lambda: "gl" + "pat-" + fakecreds.chars(rng, u, 20),
        "npm": lambda: fakecreds.npm_token(rng),
        "slack": lambda: (
            "xo"
            + "xb-"
            + fakecreds.chars(rng, "0123456789", 12)
            + "-"
            + fakecreds.chars(rng, a, 24)
        ),
        "stripe": lambda: fakecreds.SK_LIVE + fakecreds.chars(rng, a, 24),
        "openai": lambda: "sk-" + "proj-" + fakecreds.chars(rng, u, 60),
        "anthropic": lambda: "sk-" + "ant-api03-" + fakecreds.chars(rng, u, 93) + "AA",
        "sendgrid": lambda: (
            "S" + "G." + fakecreds.chars(rng, u, 22) + "." + fakecreds.chars(rng, u, 43)
        ),
        "twilio": lambda: fakecreds.chars(rng, fakecreds.HEX, 32),
        "aws": lambda: fakecreds.chars(rng, fakecreds.B64, 40),
    }
    if provider == "twilio":
        companion = "A" + "C" + fakecreds.chars(rng, fakecreds.HEX, 32)
    if provider == "aws":
        companion = "AK" + "IA" + fakecreds.chars(rng, fakecreds.BASE32, 16)
    finding = Finding(f"{provider}-bench", Category.SECRET, Severity.HIGH, "x.js", "m")
    return Credential(finding, provider, values[provider](), companion)


async def main(n: int, rate: float) -> None:
    rng = random.Random(1)
    async with provider_standin() as standin:
        settings = VerifySettings(
            timeout=5.0, urls=standin.urls(), rate=rate, insecure_loopback=True
        )
        verifier = CredentialVerifier(settings)
        print(f"{'provider':10} {'calls':>5} {'live':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for provider in PROVIDERS:
            creds = [credential(provider, rng) for _ in range(n)]
            for cred in creds[::2]:
                if provider == "aws":
                    standin.aws_keys[cred.companion or ""] = cred.value
                elif provider == "twilio":
                    standin.twilio[cred.companion or ""] = cred.value
                else:
                    standin.live[provider].add(cred.value)
            latencies = []
            live = 0
            for cred in creds:  # one at a time: the latency of one verification
                started = time.perf_counter()
                (outcome,) = await verifier.verify([cred])
                latencies.append((time.perf_counter() - started) * 1000)
                live += outcome.verdict.value == "live"
            latencies.sort()
            p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
            print(
                f"{provider:10} {standin.calls[provider]:>5} {live:>5} "
                f"{statistics.median(latencies):>8.1f} {p95:>8.1f} {latencies[-1]:>8.1f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1000.0)
    args = parser.parse_args()
    # one `credential_verified` line per call would bury the table
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main(args.n, args.rate))
