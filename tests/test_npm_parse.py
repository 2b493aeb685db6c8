"""npm documents, digests, the package diff and changes-feed pages, parsed from documented shapes
(built here, never recorded from a mirror)."""

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from watcher.ecosystems.http import Download
from watcher.ecosystems.npm.changes import (
    parse_changes_page,
    root_url_of,
    seq_number,
    watched_rows,
)
from watcher.ecosystems.npm.client import (
    escape_name,
    packument_url,
    parse_npm_target,
    parse_packument,
    verify_download,
)
from watcher.ecosystems.npm.poll import snapshot_of
from watcher.ecosystems.versions import parse_semver
from watcher.errors import IntegrityError, RegistryError
from watcher.feeds.base import (
    BaselineSeen,
    PackageState,
    PackageUnpublished,
    ReleaseSeen,
    VersionRemoved,
    Watchlist,
)
from watcher.feeds.reconcile import Missing, diff_package
from watcher.model import Artifact, Ecosystem

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def version_doc(name, version, tarball_base="http://registry.test"):
    short = name.split("/")[-1]
    return {
        "name": name,
        "version": version,
        "dist": {
            "tarball": f"{tarball_base}/{name}/-/{short}-{version}.tgz",
            "integrity": "sha512-"
            + base64.b64encode(hashlib.sha512(version.encode()).digest()).decode(),
            "shasum": hashlib.sha1(version.encode()).hexdigest(),
        },
    }


def packument(name, versions, extra_times=None, rev="3-abc"):
    times = {"created": "2026-01-01T00:00:00.000Z", "modified": "2026-02-01T00:00:00.000Z"}
    times.update({v: f"2026-01-{i + 1:02d}T00:00:00.000Z" for i, v in enumerate(versions)})
    times.update(extra_times or {})
    return {
        "_id": name,
        "_rev": rev,
        "name": name,
        "dist-tags": {"latest": versions[-1]} if versions else {},
        "versions": {v: version_doc(name, v) for v in versions},
        "time": times,
    }


def test_scoped_names_are_escaped_one_way_everywhere():
    assert escape_name("@acme/cli") == "@acme%2fcli"
    assert escape_name("left-pad") == "left-pad"
    assert packument_url("http://r.test/npm/", "@acme/cli") == "http://r.test/npm/@acme%2fcli"
    assert packument_url("http://r.test/npm", "x") == "http://r.test/npm/x"
    with pytest.raises(RegistryError):
        escape_name("../etc/passwd")


def test_npm_target_spec_with_and_without_scope():
    assert parse_npm_target("npm:@acme/cli@1.2.3") == ("@acme/cli", "1.2.3")
    assert parse_npm_target("npm:left-pad@latest") == ("left-pad", "latest")
    for bad in ("npm:left-pad", "npm:@acme/cli", "npm:left-pad@"):
        with pytest.raises(RegistryError):
            parse_npm_target(bad)


def test_packument_versions_times_and_removed_versions():
    doc = packument("demo", ["1.0.0", "1.1.0"], {"1.0.1": "2026-01-05T00:00:00.000Z"})
    parsed = parse_packument(doc)
    assert set(parsed.versions) == {"1.0.0", "1.1.0"}
    assert parsed.removed_versions == {"1.0.1"}  # in time, gone from versions: unpublished
    assert parsed.generation == 3
    release = parsed.release("1.1.0")
    assert release.published_at == datetime(2026, 1, 2, tzinfo=UTC)
    assert release.artifacts[0].filename == "demo-1.1.0.tgz"
    assert release.artifacts[0].integrity.startswith("sha512-")


def test_full_unpublish_tombstone_with_object_time_unpublished_parses():
    doc = {
        "_id": "gone",
        "_rev": "9-x",
        "name": "gone",
        "time": {
            "created": "2026-01-01T00:00:00.000Z",
            "1.0.0": "2026-01-01T00:00:00.000Z",
            "unpublished": {"time": "2026-03-01T12:00:00.000Z", "versions": ["1.0.0"]},
        },
    }
    parsed = parse_packument(doc)
    assert parsed.versions == {}
    assert parsed.unpublished is not None
    assert parsed.unpublished.at == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert parsed.unpublished.versions == ("1.0.0",)
    snap = snapshot_of(parsed, None)
    assert snap.unpublished and not snap.releases


def test_trimmed_mirror_documents_degrade_instead_of_failing():
    # No _rev, offset-style times, a version manifest that is not an object, no dist.
    doc = {
        "name": "trim",
        "versions": {"1.0.0": {"name": "trim", "version": "1.0.0"}, "2.0.0": "junk"},
        "time": {
            "1.0.0": "2026-03-31T00:59:04.644000+00:00",
            "unpublished": "2026-04-01T00:00:00Z",
        },
    }
    parsed = parse_packument(doc)
    assert parsed.generation is None
    assert list(parsed.versions) == ["1.0.0"]
    assert parsed.versions["1.0.0"].tarball is None
    assert parsed.times["1.0.0"].year == 2026
    with pytest.raises(RegistryError):
        parse_packument(["not", "an", "object"])


def test_integrity_verification_accepts_match_and_rejects_tamper(tmp_path):
    data = b"tarball bytes"
    path = tmp_path / "x.tgz"
    path.write_bytes(data)
    download = Download(
        path,
        len(data),
        {n: hashlib.new(n, data).hexdigest() for n in ("sha512", "sha256", "sha1")},
        "http://r.test/x.tgz",
    )
    good = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    verify_download(Artifact("x.tgz", integrity=good), download)
    verify_download(Artifact("x.tgz", integrity=f"sha1-{hashlib.sha1(data).hexdigest()}"), download)
    # Several SRI tokens: the strongest decides, options after "?" are ignored.
    bad_sha1 = "sha1-" + base64.b64encode(b"\0" * 20).decode()
    verify_download(Artifact("x.tgz", integrity=f"{bad_sha1} {good}?opt"), download)
    tampered = "sha512-" + base64.b64encode(hashlib.sha512(b"other").digest()).decode()
    with pytest.raises(IntegrityError):
        verify_download(Artifact("x.tgz", integrity=tampered), download)
    with pytest.raises(IntegrityError):
        verify_download(Artifact("x.tgz", integrity="md5-zzz"), download)


def snap(versions, **extra):
    return snapshot_of(parse_packument(packument("demo", versions, **extra)), None)


def test_first_sight_records_newest_stable_as_baseline_without_releases():
    events, state = diff_package(
        Ecosystem.NPM,
        "demo",
        None,
        snap(["1.0.0", "1.1.0", "2.0.0-rc.1"]),
        feed="t",
        now=NOW,
        version_key=parse_semver,
    )
    assert [type(e) for e in events] == [BaselineSeen]
    assert events[0].release.version == "1.1.0"
    assert state.versions == {"1.0.0", "1.1.0", "2.0.0-rc.1"}


def test_set_difference_catches_backports_and_every_coalesced_version():
    state = PackageState(
        versions=frozenset({"1.0.0", "2.0.0"}),
        files=frozenset({"1.0.0/demo-1.0.0.tgz", "2.0.0/demo-2.0.0.tgz"}),
    )
    events, new = diff_package(
        Ecosystem.NPM,
        "demo",
        state,
        snap(["1.0.0", "2.0.0", "1.0.1", "2.0.1", "2.1.0"]),
        feed="t",
        now=NOW,
        version_key=parse_semver,
    )
    assert [e.release.version for e in events if isinstance(e, ReleaseSeen)] == [
        "1.0.1",
        "2.0.1",
        "2.1.0",
    ]
    assert new.versions == {"1.0.0", "1.0.1", "2.0.0", "2.0.1", "2.1.0"}


def test_a_file_added_to_a_known_version_is_a_release_of_that_file_alone():
    state = PackageState(versions=frozenset({"1.0.0"}), files=frozenset({"1.0.0/old-name.tgz"}))
    events, new = diff_package(
        Ecosystem.NPM, "demo", state, snap(["1.0.0"]), feed="t", now=NOW, version_key=parse_semver
    )
    assert [type(e) for e in events] == [ReleaseSeen, VersionRemoved]
    assert [a.filename for a in events[0].release.artifacts] == ["demo-1.0.0.tgz"]
    assert events[1].filename == "old-name.tgz" and events[1].reason == "removed"
    assert new.files == {"1.0.0/demo-1.0.0.tgz"}


def test_removed_versions_and_full_unpublish_are_events():
    state = PackageState(versions=frozenset({"1.0.0", "1.1.0"}))
    events, _ = diff_package(
        Ecosystem.NPM,
        "demo",
        state,
        snap(["1.0.0"], extra_times={"1.1.0": "2026-01-09T00:00:00Z"}),
        feed="t",
        now=NOW,
        version_key=parse_semver,
    )
    assert len(events) == 1 and isinstance(events[0], VersionRemoved)
    assert events[0].version == "1.1.0"
    assert events[0].removed_at is not None  # the doc still dates it

    events, new = diff_package(
        Ecosystem.NPM, "demo", state, Missing(), feed="t", now=NOW, version_key=parse_semver
    )
    assert isinstance(events[0], PackageUnpublished) and events[0].versions == ("1.0.0", "1.1.0")
    assert new == PackageState()

    # Missing on first sight: remembered as seen-and-empty, so its first publish pages.
    events, new = diff_package(
        Ecosystem.NPM, "demo", None, Missing(), feed="t", now=NOW, version_key=parse_semver
    )
    assert events == [] and new == PackageState()
    events, _ = diff_package(
        Ecosystem.NPM, "demo", new, snap(["0.1.0"]), feed="t", now=NOW, version_key=parse_semver
    )
    assert [type(e) for e in events] == [ReleaseSeen]


def test_changes_page_rows_opaque_seqs_deleted_and_design_docs():
    page = parse_changes_page(
        {
            "results": [
                {"seq": 10, "id": "a", "changes": [{"rev": "3-x"}, {"rev": "5-y"}]},
                {"seq": "11-g1AAAA", "id": "_design/app", "changes": [{"rev": "1-z"}]},
                {"seq": 12, "id": "@acme/cli", "changes": [{"rev": "2-q"}], "deleted": True},
                {"seq": 13, "id": "a", "changes": [{"rev": "4-x"}]},
                {"seq": 14, "id": "other", "changes": []},
                "junk",
            ],
            "last_seq": "14",
        }
    )
    assert [r.seq for r in page.rows] == ["10", "11-g1AAAA", "12", "13", "14"]
    assert page.rows[0].generation == 5
    assert page.rows[2].deleted and not page.rows[0].deleted
    wanted = watched_rows(page.rows, Watchlist.of(["a", "@acme/*", "_design/app"]))
    assert wanted == {"a": 5, "@acme/cli": 2}
    assert seq_number("11-g1AAAA") == 11 and seq_number("opaque") is None
    with pytest.raises(RegistryError):
        parse_changes_page({"error": "bad"})


def test_root_url_of_changes_url():
    assert root_url_of("http://c.test/registry/_changes") == "http://c.test/registry/"
    assert root_url_of("http://c.test/_changes") == "http://c.test/"
