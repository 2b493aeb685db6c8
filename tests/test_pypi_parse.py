"""Simple API parsing: PEP 691 JSON, PEP 503 HTML, filenames → versions, degraded mirror pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from watcher.ecosystems.pypi.changelog import JournalEntry, parse_entries, watched_entries
from watcher.ecosystems.pypi.client import (
    best_hash,
    normalize,
    parse_simple_html,
    parse_simple_json,
    version_from_filename,
)
from watcher.errors import RegistryError
from watcher.feeds.base import Watchlist

PAGE = "https://index.example/simple/acme-sdk/"
SHA_A = "a" * 64
SHA_B = "b" * 64


def _json_page(**overrides: object) -> bytes:
    doc: dict[str, object] = {
        "meta": {"api-version": "1.4", "_last-serial": 4242},
        "name": "acme-sdk",
        "versions": ["1.0.0", "1.1.0", "2.0.0"],
        "files": [
            {
                "filename": "acme_sdk-1.0.0.tar.gz",
                "url": "../../packages/aa/acme_sdk-1.0.0.tar.gz",
                "hashes": {"sha256": SHA_A},
                "requires-python": ">=3.9",
                "size": 1234,
                "upload-time": "2024-01-17T16:53:12.779164Z",
                "yanked": False,
            },
            {
                "filename": "acme_sdk-1.1.0-py3-none-any.whl",
                "url": "https://files.example/packages/bb/acme_sdk-1.1.0-py3-none-any.whl",
                "hashes": {"SHA256": SHA_B.upper()},
                "yanked": "broken on 3.12",
            },
            {
                "filename": "acme_sdk-1.1.0.tar.gz",
                "url": "https://files.example/packages/cc/acme_sdk-1.1.0.tar.gz",
                "hashes": {},
                "yanked": True,
            },
        ],
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


def test_json_page_files_hashes_sizes_times_and_serial() -> None:
    page = parse_simple_json(_json_page(), PAGE, project="Acme_SDK")
    assert page.name == "acme-sdk"
    assert page.form == "json"
    assert page.last_serial == 4242
    assert page.versions == ("1.0.0", "1.1.0", "2.0.0"), "PEP 700 versions are kept as served"
    sdist = page.files[0]
    assert sdist.url == "https://index.example/packages/aa/acme_sdk-1.0.0.tar.gz", "relative URL"
    assert sdist.version == "1.0.0"
    assert sdist.sha256 == SHA_A
    assert sdist.size == 1234
    assert sdist.upload_time == datetime(2024, 1, 17, 16, 53, 12, 779164, tzinfo=UTC)
    assert sdist.requires_python == ">=3.9"
    assert not sdist.yanked


def test_json_page_yanked_forms_and_hash_case() -> None:
    page = parse_simple_json(_json_page(), PAGE, project="acme-sdk")
    wheel, sdist = page.files[1], page.files[2]
    assert wheel.sha256 == SHA_B, "hash names and digests are lower-cased"
    assert wheel.yanked and wheel.yanked_reason == "broken on 3.12"
    assert sdist.yanked and sdist.yanked_reason is None
    assert sdist.sha256 is None


def test_header_serial_wins_and_string_serial_from_mirror_is_read() -> None:
    page = parse_simple_json(_json_page(), PAGE, project="acme-sdk", header_serial="5000")
    assert page.last_serial == 5000
    mirror = parse_simple_json(
        _json_page(meta={"api-version": "1.1", "_last-serial": "25862117"}), PAGE, project="x"
    )
    assert mirror.last_serial == 25862117


def test_stripped_mirror_page_degrades_without_failing() -> None:
    body = json.dumps(
        {
            "meta": {"api-version": "1.0"},
            "name": "acme-sdk",
            "files": [
                {"filename": "acme_sdk-3.0.0-py3-none-any.whl", "url": "f.whl", "hashes": {}},
                {"filename": "README.txt", "url": "README.txt", "hashes": {}},
                {"url": "no-filename"},
                "junk",
            ],
        }
    ).encode()
    page = parse_simple_json(body, PAGE, project="acme-sdk")
    assert page.last_serial is None
    assert [f.filename for f in page.files] == ["acme_sdk-3.0.0-py3-none-any.whl", "README.txt"]
    assert page.files[1].version is None, "an unparseable file is listed but has no version"
    assert page.versions == ("3.0.0",), "versions derived from files when PEP 700 is absent"
    assert page.files[0].size is None and page.files[0].upload_time is None


@pytest.mark.parametrize("body", [b"{trunc", b"[]", b'{"name": "x"}'])
def test_broken_json_page_is_a_registry_error(body: bytes) -> None:
    with pytest.raises(RegistryError):
        parse_simple_json(body, PAGE, project="acme-sdk")


def test_release_collects_every_file_of_the_version() -> None:
    page = parse_simple_json(_json_page(), PAGE, project="acme-sdk")
    release = page.release("1.1.0")
    assert release.name == "acme-sdk"
    assert [a.filename for a in release.artifacts] == [
        "acme_sdk-1.1.0-py3-none-any.whl",
        "acme_sdk-1.1.0.tar.gz",
    ]
    assert release.artifacts[0].sha256 == SHA_B
    first = page.release("1.0.0")
    assert first.published_at == datetime(2024, 1, 17, 16, 53, 12, 779164, tzinfo=UTC)
    assert first.artifacts[0].size == 1234
    assert page.release("2.0.0").artifacts == (), "a listed version without files yet"
    with pytest.raises(RegistryError):
        page.release("9.9.9")


HTML = f"""<!DOCTYPE html>
<html><head><meta name="pypi:repository-version" content="1.0"><title>Links for acme-sdk</title></head>
<body><h1>Links for acme-sdk</h1>
<a href="../../packages/acme_sdk-1.0.0.tar.gz#sha256={SHA_A}" data-requires-python="&gt;=3.9">acme_sdk-1.0.0.tar.gz</a><br/>
<a href="/packages/acme_sdk-1.1.0-py3-none-any.whl#md5=0123456789abcdef0123456789abcdef" data-yanked="">acme_sdk-1.1.0-py3-none-any.whl</a><br/>
<a href="https://files.example/acme_sdk-1.2.0%2Blocal-py3-none-any.whl" data-yanked="bad build">x</a><br/>
<a name="anchor-without-href">nothing</a>
</body></html>
<!--SERIAL 777-->
"""


def test_html_page_links_fragments_yanks_and_serial_comment() -> None:
    page = parse_simple_html(HTML, PAGE, project="ACME.sdk")
    assert page.form == "html"
    assert page.last_serial == 777, "PyPI's <!--SERIAL n--> comment"
    assert [f.filename for f in page.files] == [
        "acme_sdk-1.0.0.tar.gz",
        "acme_sdk-1.1.0-py3-none-any.whl",
        "acme_sdk-1.2.0+local-py3-none-any.whl",
    ]
    sdist, wheel, local = page.files
    assert sdist.url == "https://index.example/packages/acme_sdk-1.0.0.tar.gz", "fragment dropped"
    assert sdist.sha256 == SHA_A
    assert sdist.requires_python == ">=3.9", "entities decoded"
    assert wheel.url == "https://index.example/packages/acme_sdk-1.1.0-py3-none-any.whl"
    assert wheel.sha256 is None and best_hash(wheel.hashes) == ("md5", "0123456789abcdef" * 2)
    assert wheel.yanked and wheel.yanked_reason is None
    assert local.yanked and local.yanked_reason == "bad build"
    assert local.version == "1.2.0+local"
    assert page.versions == ("1.0.0", "1.1.0", "1.2.0+local")


def test_html_base_tag_and_header_serial() -> None:
    html = (
        '<html><head><base href="https://cdn.example/x/"></head><a href="acme_sdk-1.0.tar.gz">a</a>'
    )
    page = parse_simple_html(html, PAGE, project="acme-sdk", header_serial="12", etag='"e1"')
    assert page.files[0].url == "https://cdn.example/x/acme_sdk-1.0.tar.gz"
    assert page.last_serial == 12 and page.etag == '"e1"'
    assert page.files[0].sha256 is None, "a private index may publish no hash at all"


@pytest.mark.parametrize(
    ("filename", "project", "version"),
    [
        ("acme_sdk-1.1.0-py3-none-any.whl", "acme-sdk", "1.1.0"),
        ("acme_sdk-1.1.0-1-cp311-cp311-manylinux_2_28_x86_64.whl", "acme-sdk", "1.1.0"),
        ("acme_sdk-2.0.0rc1.tar.gz", "Acme.SDK", "2.0.0rc1"),
        ("acme-sdk-2.0.zip", "acme-sdk", "2.0"),
        ("Acme-SDK-0.9.tar.bz2", "acme_sdk", "0.9"),
        ("acme_sdk-0.8-py2.7.egg", "acme-sdk", "0.8"),
        ("other_pkg-1.0-py3-none-any.whl", "acme-sdk", None),
        ("acme_sdk-notaversion.tar.gz", "acme-sdk", None),
        ("acme_sdk-1.0.exe.txt", "acme-sdk", None),
    ],
)
def test_filename_to_version(filename: str, project: str, version: str | None) -> None:
    assert version_from_filename(filename, project) == version


def test_normalize_is_pep_503() -> None:
    assert normalize("Friendly__Bard.Lib") == "friendly-bard-lib"


# --------------------------------------------------------------------------- journal entries


def test_journal_entries_parse_and_skip_malformed_rows() -> None:
    rows = [
        ["Acme_SDK", "1.0", 1701280908, "new release", 10],
        ["acme-sdk", "1.0", 1701280908, "add py3 file acme_sdk-1.0-py3-none-any.whl", 11],
        ["acme-sdk", None, 1701280909, "add Owner someone", 12],
        ["short", "row"],
        [None, "1.0", 1, "x", 13],
        ["acme-sdk", "1.0", 1, "serial is text", "14"],
        "junk",
    ]
    entries = parse_entries(rows)
    assert [e.serial for e in entries] == [10, 11, 12]
    assert entries[2] == JournalEntry("acme-sdk", None, 1701280909, "add Owner someone", 12)
    with pytest.raises(RegistryError):
        parse_entries({"not": "a list"})


def test_watched_entries_normalize_names_and_keep_the_highest_serial() -> None:
    entries = [
        JournalEntry("Acme_SDK", "1.0", None, "new release", 10),
        JournalEntry("acme.sdk", "1.0", None, "add source file x", 12),
        JournalEntry("acme-sdk", "1.0", None, "yank release", 11),
        JournalEntry("acme-tools", "0.1", None, "new release", 13),
        JournalEntry("other", "0.1", None, "new release", 14),
    ]
    watched = watched_entries(entries, Watchlist.of(["ACME-sdk", "acme-t*"]))
    assert watched == {"acme-sdk": 12, "acme-tools": 13}
