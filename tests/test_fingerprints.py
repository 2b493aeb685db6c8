"""The fingerprint index (`watcher fingerprint build / info`): versioned, keyed, hashes only;
compact; built from a private tree at test time; used by `watcher scan --fingerprints` and the
configuration's `fingerprints:`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import npm_tarball
from tests.privatetree import build_private_tree
from watcher.config import load_config
from watcher.errors import FingerprintError
from watcher.private import normalise
from watcher.private.build import build_index
from watcher.private.index import MAGIC, read_header, read_index
from watcher.private.keys import KEY_ENV, FingerprintKey

KEY = "cli-fingerprint-key-" + "z" * 16


def watcher(*args: str, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if key is not None:
        env[KEY_ENV] = key
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_build_and_info_hold_hashes_only(tmp_path: Path) -> None:
    tree = build_private_tree(tmp_path / "tree", files=8)
    (tmp_path / "tree/generated").mkdir()
    (tmp_path / "tree/generated/big.ts").write_text(next(iter(tree.values())))
    (tmp_path / "tree/logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    out = tmp_path / "acme.wfp"
    built = watcher(
        "fingerprint", "build", str(tmp_path / "tree"), "--out", str(out), "--name", "acme",
        "--exclude", "generated",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "8 files" in built.stdout and "key id" in built.stdout
    data = out.read_bytes()
    assert data.startswith(MAGIC)
    for text in tree.values():  # no line of the tree, no identifier, no file name
        for line in text.splitlines():
            if "computeShare" in line:
                assert line.strip().encode() not in data
    assert b"module0" not in data and b"billing/" not in data and b"computeShare" not in data
    assert KEY.encode() not in data

    info = watcher("fingerprint", "info", str(out), "--format", "json", key=None)
    assert info.returncode == 0, info.stderr
    meta = json.loads(info.stdout)
    assert meta["version"] == 2 and meta["name"] == "acme" and meta["files"] == 8
    assert meta["key_id"] == FingerprintKey(KEY).id
    assert meta["lines"] > 300 and meta["winnow"] > 0
    text = watcher("fingerprint", "info", str(out), key=None)
    assert "format version 2" in text.stdout and FingerprintKey(KEY).id in text.stdout


def test_common_lines_are_left_out(tmp_path: Path) -> None:
    build_private_tree(tmp_path / "tree", files=10)
    key = FingerprintKey(KEY)
    result = build_index([tmp_path / "tree"], tmp_path / "i.wfp", key)
    index = read_index(tmp_path / "i.wfp")
    licence_line = key.line_hasher()(
        b"*LicensedundertheMITLicense.SeeLICENSEintheprojectrootforlicenseinformation."
    )
    react = key.line_hasher()(b'import{useState,useEffect}from"react";')
    assert licence_line not in index.lines and react not in index.lines
    assert result.common_lines >= 4
    assert result.header.params.common_files == 4


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    no_key = watcher("fingerprint", "build", str(tmp_path / "empty"), "--out", "x", key=None)
    assert no_key.returncode == 2 and KEY_ENV in no_key.stderr
    short = watcher("fingerprint", "build", str(tmp_path / "empty"), "--out", "x", key="short")
    assert short.returncode == 2 and "at least 16" in short.stderr and "short" not in short.stderr
    empty = watcher("fingerprint", "build", str(tmp_path / "empty"), "--out", str(tmp_path / "x"))
    assert empty.returncode == 2 and "no text files" in empty.stderr
    junk = tmp_path / "junk.wfp"
    junk.write_bytes(b"hello")
    assert "not a fingerprint index" in watcher("fingerprint", "info", str(junk)).stderr
    build_private_tree(tmp_path / "tree", files=3)
    good = tmp_path / "good.wfp"
    build_index([tmp_path / "tree"], good, FingerprintKey(KEY))
    newer = tmp_path / "newer.wfp"
    newer.write_bytes(good.read_bytes().replace(b'"version":2', b'"version":9'))
    with pytest.raises(FingerprintError, match="version 9"):
        read_header(newer)
    older = tmp_path / "v1.wfp"  # a format-1 index (64-bit line hashes, pairs): rebuild it
    older.write_bytes(
        good.read_bytes()
        .replace(b'"version":2', b'"version":1')
        .replace(b'"blake2b-keyed-file64-line48"', b'"blake2b-64-keyed"'.ljust(29))  # same length
    )
    with pytest.raises(FingerprintError, match=r"version 1 .*rebuild the index"):
        read_index(older)
    pkg = npm_tarball(tmp_path / "p.tgz", {"index.js": "x()\n"}, name="p")
    refused = watcher("scan", str(pkg), "--fingerprints", str(older))
    assert refused.returncode == 2 and "rebuild the index" in refused.stderr
    shown = watcher("fingerprint", "info", str(older), key=None)  # info still says what it is
    assert shown.returncode == 0 and "format version 1" in shown.stdout
    assert "rebuild the index" in shown.stdout
    cut = tmp_path / "cut.wfp"
    cut.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(FingerprintError, match="truncated or corrupt"):
        read_index(cut)


def test_index_of_a_large_tree_stays_compact(tmp_path: Path) -> None:
    """About 20k lines: the index costs about 10 bytes a line with winnowing (6 bytes a line hash
    or fingerprint; a 500k-line tree in a few MB; bench/fingerprint_bench.py prints the full-size
    figure)."""
    build_private_tree(tmp_path / "tree", files=300)
    result = build_index([tmp_path / "tree"], tmp_path / "i.wfp", FingerprintKey(KEY))
    lines = sum(len(p.read_text().splitlines()) for p in (tmp_path / "tree/src").rglob("*.ts"))
    assert lines > 20_000
    assert result.size < 14 * lines


def test_scan_with_fingerprints_from_the_command_line_and_the_config(tmp_path: Path) -> None:
    tree = build_private_tree(tmp_path / "tree", files=5)
    index = tmp_path / "acme.wfp"
    assert (
        watcher("fingerprint", "build", str(tmp_path / "tree"), "--out", str(index)).returncode == 0
    )
    pkg = npm_tarball(
        tmp_path / "p.tgz", {"dist/x.js": next(iter(tree.values()))}, name="@acme/web"
    )
    clean = watcher("scan", str(pkg), "--format", "json")
    assert clean.returncode == 0
    hit = watcher("scan", str(pkg), "--format", "json", "--fingerprints", str(index))
    assert hit.returncode == 1, hit.stderr
    rules = [f["rule"] for f in json.loads(hit.stdout)["findings"]]
    assert rules == ["private-source"]
    # repeatable: each index found is named under its label
    other = tmp_path / "other.wfp"
    build_index([tmp_path / "tree"], other, FingerprintKey(KEY), name="other")
    both = watcher(
        "scan", str(pkg), "--format", "json", "--fingerprints", str(index), "--fingerprints",
        str(other),
    )  # fmt: skip
    assert both.returncode == 1, both.stderr
    [finding] = json.loads(both.stdout)["findings"]
    assert sorted(finding["evidence"]["indexes"]) == ["other", "tree"]

    config = tmp_path / "watcher.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            packages: [{{ecosystem: npm, name: "@acme/web", owner: web}}]
            owners: {{web: {{console: true}}}}
            fingerprints: [{index}]
            scan: {{fingerprint_threshold: 0.9}}
            """
        )
    )
    via_config = watcher("scan", str(pkg), "--format", "json", "--config", str(config))
    assert via_config.returncode == 1, via_config.stderr
    assert "private-source" in via_config.stdout
    wrong = watcher("scan", str(pkg), "--fingerprints", str(index), key="another-key-" + "q" * 20)
    assert wrong.returncode == 2 and "built with key id" in wrong.stderr


def test_config_fingerprints_top_level_and_per_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_private_tree(tmp_path / "tree", files=3)
    shared, own = tmp_path / "shared.wfp", tmp_path / "own.wfp"
    build_index([tmp_path / "tree"], shared, FingerprintKey(KEY))
    build_index([tmp_path / "tree"], own, FingerprintKey(KEY), name="own")
    config = tmp_path / "watcher.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            packages:
              - {{ecosystem: npm, name: "@acme/web", owner: web}}
              - {{ecosystem: npm, name: other, owner: ops}}
            owners:
              web: {{console: true, fingerprints: [{own}]}}
              ops: {{console: true}}
            fingerprints: [{shared}]
            scan: {{fingerprint_key: "${{FP_KEY}}"}}
            """
        )
    )
    monkeypatch.setenv("FP_KEY", KEY)
    loaded = load_config(config)
    assert loaded.scan_options("web").fingerprints == (str(shared), str(own))
    assert loaded.scan_options("ops").fingerprints == (str(shared),)
    assert loaded.scan_options("web").fingerprint_key == KEY
    assert KEY not in repr(loaded.scan_options("web"))
    assert loaded.scan_options().fingerprint_threshold == 0.5
    config.write_text(config.read_text().replace("scan: {", "scan: {fingerprint_threshold: 0.3, "))
    assert load_config(config).scan_options("web").fingerprint_threshold == 0.3

    monkeypatch.setenv("FP_KEY", "a-different-key-" + "w" * 16)
    with pytest.raises(Exception, match=r"fingerprints\[0\]: .* built with key id"):
        load_config(config)
    config.write_text(config.read_text().replace(str(shared), str(tmp_path / "missing.wfp")))
    monkeypatch.setenv("FP_KEY", KEY)
    with pytest.raises(Exception, match=r"fingerprints\[0\]: .*cannot read fingerprint index"):
        load_config(config)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"", b"a", b"bc", b"\n", b"\n\n", b"x = 1;", b"  ", b"\t"])))
def test_the_whole_file_form_is_the_one_indexes_were_built_with(pieces: list[bytes]) -> None:
    """Index format v1 hashed blank-line runs collapsed by a regex and the ends stripped; the
    matcher now joins the non-empty split lines: the same bytes, so older indexes still match."""
    data = normalise.squeezed(b"".join(pieces))
    assert normalise.whole(data) == re.sub(rb"\n{2,}", b"\n", data).strip(b"\n")
    assert normalise.whole(data, normalise.split_lines(data)) == normalise.whole(data)


def test_build_takes_several_dirs_into_one_index(tmp_path: Path) -> None:
    build_private_tree(tmp_path / "billing", files=3)
    build_private_tree(tmp_path / "ledger", files=2, seed=8)
    out = tmp_path / "both.wfp"
    built = watcher(
        "fingerprint", "build", str(tmp_path / "billing"), str(tmp_path / "ledger"),
        "--out", str(out),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    header = read_header(out)
    assert header.files == 5 and header.name == "billing"  # the first DIR's name by default


def test_the_file_is_laid_out_as_docs_fingerprints_md_says(tmp_path: Path) -> None:
    """Read with nothing but the documented layout (docs/fingerprints.md, format version 2)."""
    tree = build_private_tree(tmp_path / "tree", files=5)
    out = tmp_path / "i.wfp"
    key = FingerprintKey(KEY)
    build_index([tmp_path / "tree"], out, key, name="doc")
    data = out.read_bytes()
    assert data[:8] == b"WATCHFP\n"
    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[12 : 12 + length].decode("utf-8"))
    body = data[12 + length :]
    assert header["format"] == "watcher-fingerprints" and header["version"] == 2
    assert header["hash"] == "blake2b-keyed-file64-line48" and header["name"] == "doc"
    assert set(header["params"]) == {"line_floor", "common_files", "winnow_k", "winnow_w"}
    assert {"key_id", "created", "files", "lines", "winnow", "sha256"} <= set(header)
    files, lines, winnow = header["files"], header["lines"], header["winnow"]
    assert len(body) == 16 * files + 6 * lines + 6 * winnow
    assert hashlib.sha256(body).hexdigest() == header["sha256"]
    table = [struct.unpack_from("<8sII", body, 16 * n) for n in range(files)]
    assert sum(t[1] for t in table) == lines and sum(t[2] for t in table) == winnow
    # the lines part: each file's run of 6-byte hashes, in file order, sorted within the run
    runs, offset = [], 16 * files
    for _, count, _ in table:
        run = [body[offset + 6 * i : offset + 6 * i + 6] for i in range(count)]
        assert run == sorted(run) and len(set(run)) == count
        runs.append(set(run))
        offset += 6 * count
    winnow_runs = []
    for _, _, count in table:
        run = [body[offset + 6 * i : offset + 6 * i + 6] for i in range(count)]
        assert run == sorted(run)
        winnow_runs.append(set(run))
        offset += 6 * count
    assert offset == len(body)
    # a file's run holds the keyed 48-bit hashes of its distinctive lines: the file number is
    # implicit, and a reader that knows only this layout finds a private file's lines
    texts = [normalise.squeezed(t.encode()) for t in tree.values()]
    hashed = [{key.line_hasher()(line) for line in normalise.distinct_lines(t)} for t in texts]
    for n, (file_hash, count, _) in enumerate(table):
        [source] = [
            i for i, t in enumerate(texts) if key.file_hash(normalise.whole(t)) == file_hash
        ]
        assert runs[n] <= hashed[source] and count > 0
        assert all(len(h) == 6 for h in runs[n] | winnow_runs[n])
