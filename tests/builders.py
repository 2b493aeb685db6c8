"""Build real archives at test time: npm tarballs, wheels, sdists, and hostile variants."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def npm_tarball(
    path: Path,
    files: Mapping[str, bytes | str],
    *,
    name: str = "demo-pkg",
    version: str = "1.0.0",
    package_json: Mapping[str, Any] | None = None,
) -> Path:
    """An npm-pack-shaped .tgz: everything under `package/`, package.json first."""
    manifest = {"name": name, "version": version, **(package_json or {})}
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, "package/package.json", json.dumps(manifest).encode())
        for member, data in files.items():
            _add(archive, f"package/{member}", data)
    return path


def wheel(
    path_dir: Path,
    files: Mapping[str, bytes | str],
    *,
    name: str = "demo_pkg",
    version: str = "1.0.0",
    metadata: str = "",
    tag: str = "py3-none-any",
) -> Path:
    """A wheel; `metadata`: more METADATA header lines (`Requires-Dist: …`)."""
    path = path_dir / f"{name}-{version}-{tag}.whl"
    dist_info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            archive.writestr(member, data)
        archive.writestr(
            f"{dist_info}/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{metadata}\n",
        )
        archive.writestr(
            f"{dist_info}/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: {tag}\n",
        )
        archive.writestr(f"{dist_info}/RECORD", "")
    return path


def sdist(
    path_dir: Path,
    files: Mapping[str, bytes | str],
    *,
    name: str = "demo_pkg",
    version: str = "1.0.0",
) -> Path:
    path = path_dir / f"{name}-{version}.tar.gz"
    root = f"{name}-{version}"
    with tarfile.open(path, "w:gz") as archive:
        _add(
            archive,
            f"{root}/PKG-INFO",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode(),
        )
        for member, data in files.items():
            _add(archive, f"{root}/{member}", data)
    return path


def _add(archive: tarfile.TarFile, name: str, data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(raw))


def raw_tar(
    path: Path, infos: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz"
) -> Path:
    """A tar with hand-made headers (links, devices, traversal names, duplicates)."""
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        for info, data in infos:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def gzip_of_zeros_tar(path: Path, member_size: int, name: str = "package/zeros.bin") -> Path:
    """A tar.gz whose one member is `member_size` zero bytes, streamed through the compressor so
    building a multi-GiB bomb costs little memory."""
    header = tarfile.TarInfo(name)
    header.size = member_size
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1024 * 1024)
    with path.open("wb") as out:
        out.write(compressor.compress(header.tobuf(format=tarfile.GNU_FORMAT)))
        remaining = member_size
        while remaining > 0:
            chunk = block if remaining >= len(block) else bytes(remaining)
            out.write(compressor.compress(chunk))
            remaining -= len(chunk)
        padding = (512 - member_size % 512) % 512
        out.write(compressor.compress(bytes(padding + 1024)))
        out.write(compressor.flush())
    return path
