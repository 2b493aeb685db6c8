"""`watcher run`, `check-config` and `status` as a user runs them: configuration errors are one
clear message naming the key path with exit 2, the plan masks secrets, status reads the store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service_harness import service_yaml, webhook_secret


def watcher(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_errors_name_the_key_path_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "packages:\n"
        "  - {ecosystem: rubygems, name: x, owner: team}\n"
        "owners: {team: {console: true}}\n"
        "registries: {npm: {poll_interval: soon}}\n"
        "sever: {listen: 1}\n"
    )
    for command in (["run", "--config", str(bad)], ["check-config", str(bad)]):
        done = watcher(*command, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        err = done.stderr
        assert "packages[0].ecosystem: expected 'npm' or 'pypi', got 'rubygems'" in err
        assert "registries.npm.poll_interval: expected a duration like 30s" in err
        assert "sever: unknown key; did you mean 'server'?" in err
    assert not (tmp_path / "watcher-state.db").exists(), "nothing is started on a bad config"


def test_missing_config_file_and_unset_variable_exit_2(tmp_path: Path) -> None:
    done = watcher("run", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert done.returncode == 2 and "cannot read configuration" in done.stderr
    config = tmp_path / "env.yaml"
    config.write_text(
        "packages: [{ecosystem: npm, name: x, owner: team}]\n"
        "owners: {team: {webhook: {url: 'http://127.0.0.1:1/h', secret: '${WATCHER_TEST_UNSET_SECRET}'}}}\n"
    )
    done = watcher("run", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert (
        "owners.team.webhook.secret: environment variable WATCHER_TEST_UNSET_SECRET is not set"
        in (done.stderr)
    )


def test_check_config_prints_the_plan_with_secrets_masked(tmp_path: Path) -> None:
    secret = webhook_secret()
    config = tmp_path / "ok.yaml"
    config.write_text(
        service_yaml(
            state=tmp_path / "state.db",
            port=9,
            npm_url="http://127.0.0.1:9/",
            packages=["demo-a", "@acme/demo-b"],
            webhook_url="http://127.0.0.1:9/hook",
            secret=secret,
        )
    )
    done = watcher("check-config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "demo-a" in done.stdout and "@acme/demo-b" in done.stdout
    assert "webhook (POST http://127.0.0.1:9/hook" in done.stdout
    assert secret not in done.stdout and secret[6:20] not in done.stdout


def test_the_example_config_is_valid_on_a_fresh_machine(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "watcher.example.yaml"
    done = watcher("check-config", str(example), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "console" in done.stdout


def test_status_without_state_says_so(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text(
        service_yaml(
            state=tmp_path / "none.db", port=9, npm_url="http://127.0.0.1:9/", packages=["a"]
        )
    )
    done = watcher("status", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 1 and "no state yet" in done.stderr
