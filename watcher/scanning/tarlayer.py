"""The members of a tar layer (plain, gzip, bz2 or xz), streamed through the bounded inflater.

A compressed file nested in an archive that holds no tar (`cli.js.map.gz`) is one member: its
content, under the name without the compression suffix.
"""

from __future__ import annotations

import lzma
from collections.abc import Iterator

from watcher.model import Member, MemberKind, Severity
from watcher.scanning.inflate import INFLATE_ERRORS, BoundedInflater
from watcher.scanning.layer import Layer, anomaly, normalise
from watcher.scanning.limits import LimitExceeded, declared_size
from watcher.scanning.tarstream import (
    ChunkReader,
    TarEntry,
    TarFormatError,
    entries,
    looks_like_tar,
)

_TAR_ERRORS: tuple[type[BaseException], ...] = (
    TarFormatError,
    EOFError,
    OSError,
    lzma.LZMAError,
    *INFLATE_ERRORS,
)

_COMPRESSED_SUFFIXES = (".gz", ".tgz", ".bz2", ".xz", ".z")


def tar_members(layer: Layer) -> Iterator[Member]:
    with layer.open() as raw:
        inflater = BoundedInflater(raw, layer.format, layer.limits, layer.tree)
        last = layer.prefix + (layer.path.name if not layer.prefix else "")
        reader = ChunkReader(inflater.next_chunk)
        try:
            if layer.depth and layer.format != "tar" and not looks_like_tar(reader.peek(512)):
                # a compressed single file (`cli.js.map.gz`): one member, its content
                yield from _single_file(layer, reader)
                return
            for entry, content in entries(reader):
                path = layer.admit(normalise(entry.name))
                if path is None:
                    break
                last = path
                yield _tar_member(layer, entry, content, path)
        except LimitExceeded as exc:
            layer.anomalies.append(anomaly(exc.rule, Severity.HIGH, last, str(exc)))
        except _TAR_ERRORS as exc:
            layer.corrupt(exc, last)
        else:
            if inflater.truncated:
                layer.corrupt(EOFError("compressed stream ends early"), last)
            elif inflater.inflated_out == 0:
                layer.corrupt(EOFError("empty archive"), last)
        finally:
            layer.bytes_read = inflater.inflated_out
            if layer.depth == 0:
                inflater.drain()
                layer.sha256 = inflater.raw_sha256.hexdigest()


_SINGLE_FILE_STEP = 1 << 20  # bytes read at a time from a compressed single file


def _inner_name(outer: str) -> str:
    """What a compressed single file holds: `cli.js.map.gz` → `cli.js.map`."""
    leaf = outer.rsplit("/", 1)[-1].rsplit("!", 1)[-1]
    lowered = leaf.lower()
    for suffix in _COMPRESSED_SUFFIXES:
        if lowered.endswith(suffix) and len(leaf) > len(suffix):
            return leaf[: -len(suffix)] + (".tar" if suffix == ".tgz" else "")
    return leaf


def _single_file(layer: Layer, reader: ChunkReader) -> Iterator[Member]:
    path = layer.admit(_inner_name(layer.prefix[:-1]))
    if path is None:
        return
    limit = layer.limits.max_member_bytes
    # grown as it is read: a `.json.gz` of a few KB must not cost a zeroed buffer of the whole
    # member limit (256 MiB by default; botocore's 400 of them took minutes)
    data = bytearray()
    while len(data) <= limit:
        chunk = reader.read(min(_SINGLE_FILE_STEP, limit + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        layer.too_large(path, len(data))
        yield Member(path, MemberKind.FILE, 0)
        return
    yield Member(path, MemberKind.FILE, len(data), data, declared_size=len(data))


def _tar_member(layer: Layer, entry: TarEntry, content: ChunkReader, name: str) -> Member:
    if entry.isreg():
        declared = declared_size(entry.size)
        if layer.too_large(name, entry.size):
            return Member(name, MemberKind.FILE, 0, declared_size=declared)
        # a bytearray of the member's own size, filled once: no further copy is made
        data = content.read(entry.size)
        if len(data) < entry.size:
            raise EOFError(f"{name}: member data ends early")
        return Member(name, MemberKind.FILE, len(data), data, declared_size=declared)
    if entry.isdir():
        return Member(name, MemberKind.DIRECTORY, 0)
    if entry.issym() or entry.islnk():
        kind = MemberKind.SYMLINK if entry.issym() else MemberKind.HARDLINK
        layer.link_anomaly(name, kind, entry.linkname)
        return Member(name, kind, 0, link_target=entry.linkname)
    if entry.isdev():
        layer.anomalies.append(
            anomaly(
                "archive-special-file",
                Severity.HIGH,
                name,
                "device or FIFO entry: no package ships one",
            )
        )
        return Member(name, MemberKind.DEVICE, 0)
    return Member(name, MemberKind.OTHER, 0, declared_size=declared_size(entry.size))
