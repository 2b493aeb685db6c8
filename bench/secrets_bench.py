"""Secret scanner throughput on a synthetic minified bundle.

Builds ~50 MB of one-line, minified-JS-like text (identifiers, string literals, URLs, base64 data
URIs, and plenty of decoy keyword hits such as `token`, `secret`, `apiKey`, `://`), plants a few
fake credentials (built at run time by tests/fakecreds.py), and prints MB/s for the keyword-windowed
scan. Figures only; nothing is asserted.

    .venv/bin/python bench/secrets_bench.py [--mb 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from fakecreds import POSITIVES  # noqa: E402

from watcher.model import Finding  # noqa: E402
from watcher.scanning.checks.base import ScanContext, TextDoc  # noqa: E402
from watcher.scanning.checks.secrets import SecretCheck, default_rules  # noqa: E402

# Code without any keyword, and code with decoy keyword hits (none of them a credential).
_PLAIN = [
    "function(e,t,n){",
    "var r=n(42),o=n.n(r);",
    'const a="https://cdn.acme-corp.io/assets/app.js";',
    "this.state={loading:!1,data:null};",
    'Object.defineProperty(exports,"__esModule",{value:!0});',
    "for(var i=0;i<e.length;i++)s+=e.charCodeAt(i);",
    'React.createElement("div",{key:n,onClick:function(){return o(n)}},',
    'n.d(t,"a",function(){return s});',
    "if(e&&e.__esModule)return e;var t={};",
    'throw new TypeError("Cannot call a class as a function");',
    "return Array.isArray(e)?e.map(u):Object.keys(e).reduce(c,{});",
]
_DECOYS = [
    "return e.token}",
    'e.exports={apiKey:t.apiKey,secret:c.secret||"",headers:{}};',
    "if(!t.password)throw new Error(",
    '"Invalid token");',
    'className:"btn SKIP_MASK ACTIVE",',
    'fetch(u,{method:"POST",body:JSON.stringify({grant_type:"refresh_token"})})',
    'window.location.href.indexOf("://")>-1&&',
    "ACTION_TYPES.SET_TOKEN:",
    'var TOKEN_KEY="auth_token",PASSWORD_MIN=8;',
]
# Planted credentials: rules that apply to a JavaScript bundle.
_PLANTABLE = sorted(set(POSITIVES) - {"generic-secret-unquoted"})


def build_text(megabytes: int, decoy_share: float, seed: int = 1) -> tuple[str, int]:
    """`decoy_share` of the pieces carry keyword hits: 0.02 gives about one hit per 2 KB, denser
    than real bundles measured (about one per 5 KB); 0.5 is a stress case."""
    rng = random.Random(seed)
    target = megabytes * 1_000_000
    data_uri = "url(data:image/png;base64," + base64.b64encode(rng.randbytes(3000)).decode() + ")"
    parts: list[str] = []
    size = planted = 0
    plant_every = target // 13
    next_plant = plant_every
    while size < target:
        roll = rng.random()
        if size >= next_plant:
            rule_id = _PLANTABLE[(planted * 7) % len(_PLANTABLE)]
            piece = ";" + POSITIVES[rule_id](random.Random(planted)).text + ";"
            planted += 1
            next_plant += plant_every
        elif roll < 0.002:
            piece = data_uri
        elif roll < decoy_share:
            piece = rng.choice(_DECOYS)
        else:
            piece = rng.choice(_PLAIN)
        parts.append(piece)
        size += len(piece)
    return "".join(parts), planted


def measure(label: str, megabytes: int, decoy_share: float, repeat: int) -> None:
    started = time.perf_counter()
    text, planted = build_text(megabytes, decoy_share)
    built = time.perf_counter() - started
    check = SecretCheck()
    ctx = ScanContext(ecosystem=None, name="bench", version="0")
    path = "package/dist/bundle.min.js"
    doc = TextDoc(path=path, text=text, member_path=path)
    best = float("inf")
    findings: list[Finding] = []
    for _ in range(repeat):
        started = time.perf_counter()
        findings = list(check.text(doc, ctx))
        best = min(best, time.perf_counter() - started)
    print(
        f"{label}: {len(text) / 1e6:.0f} MB (built in {built:.1f}s), {planted} planted, "
        f"{len(findings)} found"
    )
    print(f"  rules: {', '.join(sorted({f.rule for f in findings}))}")
    print(f"  scan: best of {repeat} = {best:.3f}s -> {len(text) / 1e6 / best:.0f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    default_rules()  # compile once, outside the timing
    measure("typical bundle (2% of pieces hit a keyword)", args.mb, 0.02, args.repeat)
    measure("stress (50% of pieces hit a keyword)", args.mb, 0.5, args.repeat)


if __name__ == "__main__":
    main()
