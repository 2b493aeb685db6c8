"""The members of a zip layer (a wheel, a zip sdist, a zip nested in an archive).

A zip is read by random access: its central directory is checked first (overlapping entries, declared
sizes and ratios, encryption) and a member is read only when it passes.
"""

from __future__ import annotations

import hashlib
import lzma
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator

from watcher.model import Member, MemberKind, Severity
from watcher.scanning.layer import Layer, anomaly, normalise
from watcher.scanning.limits import LimitExceeded, declared_size

# What zipfile raises on damaged input: a bad header can claim an unknown zip version or
# compression method (NotImplementedError), or a name that does not decode.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    struct.error,
    lzma.LZMAError,
)


def zip_members(layer: Layer) -> Iterator[Member]:
    # A zip is read by random access (central directory first); hash the file on its own.
    where = layer.prefix[:-1] if layer.prefix else layer.path.name
    if layer.depth == 0:
        with layer.path.open("rb") as handle:
            layer.sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    try:
        archive = zipfile.ZipFile(layer.open())
    except _ZIP_ERRORS as exc:
        layer.corrupt(exc, where)
        return
    tree = layer.tree
    with archive:
        infos = archive.infolist()
        overlapping = _overlaps(layer, infos, where)
        for info in infos:
            path = layer.admit(normalise(info.filename))
            if path is None:
                return
            member = _zip_member(layer, archive, info, path, overlapping)
            if member.data is not None:
                layer.bytes_read += len(member.data)
                try:
                    tree.add_inflated(len(member.data), layer.limits)
                    if layer.depth:
                        tree.check_ratio(layer.limits)
                except LimitExceeded as exc:
                    layer.anomalies.append(anomaly(exc.rule, Severity.HIGH, path, str(exc)))
                    return
            yield member


def _overlaps(layer: Layer, infos: list[zipfile.ZipInfo], where: str) -> set[int]:
    """Entries whose compressed data overlaps another's: the trick of non-recursive zip bombs."""
    spans = sorted((info.header_offset, id(info), info) for info in infos)
    bad: set[int] = set()
    previous_end = -1
    for offset, ident, info in spans:
        if offset < previous_end:
            bad.add(ident)
        # 30-byte local header + name; the extra field is not in the central directory's view.
        previous_end = max(previous_end, offset + 30 + len(info.orig_filename) + info.compress_size)
    if bad:
        layer.anomalies.append(
            anomaly(
                "archive-compression-bomb",
                Severity.HIGH,
                where,
                f"{len(bad)} zip entries overlap others' data (a zip-bomb construction); "
                "they were not read",
            )
        )
    return bad


def _zip_member(
    layer: Layer,
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    name: str,
    overlapping: set[int],
) -> Member:
    mode = info.external_attr >> 16
    if info.filename.endswith("/"):  # not is_dir(): a name cut at a NUL can be empty
        return Member(name, MemberKind.DIRECTORY, 0)
    if stat.S_ISLNK(mode):
        target = _zip_read(layer, archive, info, name, 4096) or b""
        text = target.decode("utf-8", "replace")
        layer.link_anomaly(name, MemberKind.SYMLINK, text)
        return Member(name, MemberKind.SYMLINK, 0, link_target=text)
    declared = declared_size(info.file_size)
    unread = Member(name, MemberKind.FILE, 0, declared_size=declared)
    if id(info) in overlapping:
        return unread
    if layer.too_large(name, info.file_size):
        return unread
    limits = layer.limits
    ratio = declared / max(declared_size(info.compress_size), 1)
    if declared > limits.ratio_floor_bytes and ratio > limits.max_ratio:
        layer.anomalies.append(
            anomaly(
                "archive-compression-bomb",
                Severity.HIGH,
                name,
                f"declared compression ratio {ratio:,.0f}:1 above {limits.max_ratio:g}:1; not read",
                evidence={"declared_size": declared},
            )
        )
        return unread
    if info.flag_bits & 0x1:
        layer.anomalies.append(
            anomaly(
                "archive-encrypted-member",
                Severity.MEDIUM,
                name,
                "encrypted zip entry: its content cannot be scanned",
            )
        )
        return unread
    data = _zip_read(layer, archive, info, name, limits.max_member_bytes)
    if data is None:
        return unread
    return Member(name, MemberKind.FILE, len(data), data, declared_size=declared)


def _zip_read(
    layer: Layer, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limit: int
) -> bytes | None:
    try:
        with archive.open(info) as handle:
            return handle.read(limit)
    except _ZIP_ERRORS as exc:
        layer.corrupt(exc, name)
        return None
