"""Version ordering per ecosystem and the choice of a release's baseline."""

import pytest

from watcher.ecosystems.versions import is_prerelease, newest, parse_semver, select_baseline
from watcher.model import Ecosystem

NPM = Ecosystem.NPM
PYPI = Ecosystem.PYPI


def test_semver_precedence_follows_the_spec_example_chain():
    # semver.org §11: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta < 1.0.0-beta.2
    # < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ]
    keys = [parse_semver(v) for v in chain]
    assert all(k is not None for k in keys)
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_semver_numeric_parts_compare_as_numbers_and_build_metadata_is_ignored():
    assert parse_semver("1.10.0") > parse_semver("1.9.0")
    assert parse_semver("2.0.0") > parse_semver("1.99.99")
    assert parse_semver("1.0.0+build.5") == parse_semver("1.0.0")
    assert parse_semver("v1.2.3") == parse_semver("1.2.3")


@pytest.mark.parametrize("text", ["1.2", "01.2.3", "1.2.3.4", "latest", "", "1.2.3-"])
def test_invalid_semver_is_rejected(text):
    assert parse_semver(text) is None


def test_backport_baseline_is_the_greatest_lower_version_not_the_latest_published():
    published = ["1.2.3", "1.2.4", "2.0.0", "2.1.0", "1.2.5"]
    assert select_baseline(NPM, "1.2.5", published) == "1.2.4"
    assert select_baseline(NPM, "2.1.0", published) == "2.0.0"
    assert select_baseline(NPM, "1.2.3", published) is None


def test_pre_releases_are_skipped_unless_the_target_is_one():
    published = ["1.0.0", "1.1.0-beta.1", "1.1.0-beta.2", "1.1.0"]
    assert select_baseline(NPM, "1.1.0", published) == "1.0.0"
    assert select_baseline(NPM, "1.1.0-beta.2", published) == "1.1.0-beta.1"
    assert select_baseline(NPM, "1.1.0-beta.1", published) == "1.0.0"


def test_unparsable_versions_never_become_baselines():
    assert select_baseline(NPM, "1.0.1", ["garbage", "1.0.0", "1.0"]) == "1.0.0"
    assert select_baseline(NPM, "not-a-version", ["1.0.0"]) is None


def test_pep440_ordering_and_baseline():
    published = ["1.0", "1.0.post1", "1.1rc1", "1.1", "1.10", "1.9", "2.0.dev1"]
    assert select_baseline(PYPI, "1.10", published) == "1.9"
    assert select_baseline(PYPI, "1.1", published) == "1.0.post1"
    assert select_baseline(PYPI, "1.1rc2", published) == "1.1rc1"
    # 1.0.0 equals 1.0 under PEP 440: never its own baseline.
    assert select_baseline(PYPI, "1.0.0", ["1.0", "0.9"]) == "0.9"


def test_newest_prefers_stable_and_falls_back_to_pre_releases():
    assert newest(NPM, ["1.0.0", "2.0.0-rc.1", "1.5.0"]) == "1.5.0"
    assert newest(NPM, ["2.0.0-rc.1", "2.0.0-rc.2"]) == "2.0.0-rc.2"
    assert newest(PYPI, ["1.0", "2.0b1"]) == "1.0"
    assert newest(NPM, []) is None
    assert is_prerelease(NPM, "1.0.0-0") and not is_prerelease(NPM, "1.0.0")
