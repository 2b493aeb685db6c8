"""Values to and from their stored form: JSON text, unix seconds, artifacts, manifests."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable
from typing import Any

import orjson

from watcher.model import Artifact, Manifest, ManifestEntry, Provenance, Severity


def now_or(now: float | None) -> float:
    return time.time() if now is None else now


def to_json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def artifacts_json(artifacts: Iterable[Artifact]) -> str:
    return to_json(
        [
            {
                "filename": a.filename,
                "url": a.url,
                "size": a.size,
                "sha256": a.sha256,
                "integrity": a.integrity,
                "provenance": a.provenance.to_dict() if a.provenance is not None else None,
            }
            for a in artifacts
        ]
    )


def artifacts_of(text: str) -> tuple[Artifact, ...]:
    # `provenance` is absent from rows stored before it was captured: unknown, like None.
    return tuple(
        Artifact(**{**item, "provenance": Provenance.from_dict(item.get("provenance"))})
        for item in orjson.loads(text)
    )


def encode_manifest(manifest: Manifest) -> bytes:
    data: dict[str, Any] = {
        "files": {path: [e.size, e.sha256] for path, e in manifest.files.items()},
        "fingerprints": {fp: sev.value for fp, sev in manifest.fingerprints.items()},
        "sources": sorted(manifest.sources),
    }
    if manifest.facts is not None:
        data["facts"] = {kind: sorted(values) for kind, values in manifest.facts.items()}
    return zlib.compress(orjson.dumps(data), 6)


def decode_manifest(blob: bytes) -> Manifest:
    data = orjson.loads(zlib.decompress(blob))
    return Manifest(
        files={path: ManifestEntry(size, sha) for path, (size, sha) in data["files"].items()},
        fingerprints={fp: Severity(sev) for fp, sev in data["fingerprints"].items()},
        sources=set(data.get("sources", ())),  # absent from manifests stored before it was kept
        facts=None
        if not isinstance(data.get("facts"), dict)
        else {kind: set(values) for kind, values in data["facts"].items()},
    )
