"""expect.tag's lookup (watcher/intent/tag.py) with real git: a bare repository by file:// and
over smart HTTP (git http-backend behind a local server), a private one behind an auth header
given through git's environment, a server that never answers."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import pytest

from tests.git_server import add_tag, bare_repository, serving_git, silent_server
from watcher.intent.model import TagExpectation
from watcher.intent.tag import (
    TagLookupError,
    git_environment,
    lookup_tag,
    masked,
    untagged_finding,
)
from watcher.model import Category, Severity


async def test_file_url_finds_lightweight_and_annotated_tags(tmp_path: Path) -> None:
    bare = bare_repository(tmp_path, tags=("v1.0.0",), annotated=("v1.1.0",))
    expect = TagExpectation(repository=bare.as_uri())
    light = await lookup_tag(expect, "1.0.0")
    annotated = await lookup_tag(expect, "1.1.0")
    assert light.found and light.tag == "v1.0.0" and light.commit
    assert annotated.found and annotated.commit == light.commit  # peeled to the commit
    missing = await lookup_tag(expect, "1.0.1")
    assert not missing.found and missing.commit is None


async def test_pattern_and_no_prefix_match(tmp_path: Path) -> None:
    bare = bare_repository(tmp_path, tags=("release-2.0.0", "v2.0.0-rc.1"))
    expect = TagExpectation(repository=bare.as_uri(), pattern="release-{version}")
    assert (await lookup_tag(expect, "2.0.0")).found
    # `v2.0.0` is not `v2.0.0-rc.1`: the ref must match exactly
    assert not (await lookup_tag(TagExpectation(repository=bare.as_uri()), "2.0.0")).found


async def test_smart_http_sees_a_tag_pushed_later(tmp_path: Path) -> None:
    bare = bare_repository(tmp_path, tags=("v1.0.0",))
    async with serving_git(bare) as server:
        expect = TagExpectation(repository=server.url)
        assert not (await lookup_tag(expect, "1.0.1")).found
        add_tag(bare, "v1.0.1")
        assert (await lookup_tag(expect, "1.0.1")).found


async def test_private_repository_gets_the_header_through_the_environment_only(
    tmp_path: Path,
) -> None:
    bare = bare_repository(tmp_path / "r", tags=("v3.0.0",))
    token = "gt_" + secrets.token_hex(16)
    # a git wrapper that records its command line, then runs git
    argv_log = tmp_path / "argv.log"
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {argv_log}\nexec git "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    async with serving_git(bare, authorization=f"Bearer {token}") as server:
        with pytest.raises(TagLookupError) as refused:
            await lookup_tag(TagExpectation(repository=server.url), "3.0.0", git=str(wrapper))
        assert token not in str(refused.value)
        private = TagExpectation(repository=server.url, auth_header=f"Bearer {token}")
        found = await lookup_tag(private, "3.0.0", git=str(wrapper))
    assert found.found
    assert f"Bearer {token}" in server.seen_authorization
    assert token not in argv_log.read_text()


def test_git_environment_drops_inherited_config_and_never_prompts() -> None:
    env = git_environment(
        "Bearer x",
        {
            "PATH": "/bin",
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_1": "core.sshCommand",
            "GIT_ASKPASS": "/x",
        },
    )
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"] == "Authorization: Bearer x"
    assert "GIT_CONFIG_KEY_1" not in env and "GIT_ASKPASS" not in env
    assert "GIT_CONFIG_COUNT" not in git_environment(None, {"GIT_CONFIG_COUNT": "1"})


async def test_unreachable_and_silent_servers_raise(tmp_path: Path) -> None:
    with pytest.raises(TagLookupError):
        await lookup_tag(TagExpectation(repository=(tmp_path / "none.git").as_uri()), "1.0.0")
    async with silent_server() as url:
        with pytest.raises(TagLookupError, match="timed out"):
            await lookup_tag(TagExpectation(repository=url), "1.0.0", timeout_s=1.0)


def test_untagged_finding_masks_credentials_in_the_url() -> None:
    expect = TagExpectation(repository="https://user:pw@git.example.net/acme/sdk.git")
    finding = untagged_finding(expect, "1.2.3", 600)
    assert finding.rule == "release-untagged"
    assert finding.category is Category.PROVENANCE and finding.severity is Severity.HIGH
    assert "pw" not in finding.message and "v1.2.3" in finding.message
    assert masked("ssh://git@host/x") == "ssh://…@host/x"
