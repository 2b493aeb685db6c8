"""`watcher scan` as a user runs it: exit codes, formats, --fail-on, --baseline, clear errors."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import fakecreds
from tests.builders import npm_tarball
from watcher.cli.main import build_parser


def watcher(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_clean_package_exits_zero(tmp_path: Path) -> None:
    path = npm_tarball(tmp_path / "clean.tgz", {"index.js": "module.exports = 1;\n"})
    result = watcher("scan", str(path))
    assert result.returncode == 0, result.stderr
    assert "0 findings" in result.stdout


def test_findings_at_or_above_fail_on_exit_one(tmp_path: Path) -> None:
    path = npm_tarball(tmp_path / "leaky.tgz", {".DS_Store": "x", "terraform.tfstate": "{}"})
    assert watcher("scan", str(path)).returncode == 1  # critical >= high (default)
    low_only = npm_tarball(tmp_path / "low.tgz", {".DS_Store": "x"})
    assert watcher("scan", str(low_only)).returncode == 0
    assert watcher("scan", str(low_only), "--fail-on", "low").returncode == 1


def test_json_output_is_the_contract_and_logs_go_to_stderr(tmp_path: Path) -> None:
    path = npm_tarball(tmp_path / "p.tgz", {"terraform.tfstate": "{}"}, name="x", version="1.2.3")
    result = watcher("scan", str(path), "--format", "json")
    report = json.loads(result.stdout)
    assert report["target"]["name"] == "x" and report["target"]["version"] == "1.2.3"
    assert report["baseline"] is None
    [finding] = report["findings"]
    assert finding["category"] == "sensitive-file" and finding["severity"] == "critical"
    assert set(report["stats"]) >= {"elapsed_s", "bytes_read"}
    assert '"event": "scan_finished"' in result.stderr


def test_sarif_output_and_baseline_file(tmp_path: Path) -> None:
    before = npm_tarball(tmp_path / "a.tgz", {"terraform.tfstate": "{}"})
    after = npm_tarball(
        tmp_path / "b.tgz", {"terraform.tfstate": "{}", ".npmrc": "x"}, version="1.0.1"
    )
    result = watcher("scan", str(after), "--baseline", str(before), "--format", "sarif")
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0"
    states = {r["ruleId"]: r.get("baselineState") for r in sarif["runs"][0]["results"]}
    assert states == {"terraform-state": "unchanged", "npmrc-file": "new"}


def test_unreadable_input_is_one_line_and_exit_two(tmp_path: Path) -> None:
    missing = watcher("scan", str(tmp_path / "nope.tgz"))
    assert missing.returncode == 2
    assert (
        missing.stderr.strip().splitlines()[-1] == f"watcher: {tmp_path / 'nope.tgz'}: no such file"
    )
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    not_archive = watcher("scan", str(text))
    assert not_archive.returncode == 2 and "not a tar" in not_archive.stderr
    assert "Traceback" not in not_archive.stderr


def test_usage_errors_exit_two() -> None:
    assert watcher("scan").returncode == 2
    assert watcher("scan", "x.tgz", "--format", "xml").returncode == 2


def test_the_readme_tour_commands_run_as_written() -> None:
    """Every command the README's tour shows parses, and those that read the state file name
    the configuration they need (there is no default path)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"`(watcher [^`]+)`", tour)
    assert len(commands) >= 6, commands
    parser = build_parser()
    for command in commands:
        argv = command.split()[1:]
        args = parser.parse_args(argv)
        if args.command not in ("scan", "check-config"):
            assert getattr(args, "config", None) is not None, f"{command}: needs --config FILE"


def test_the_readme_trial_secret_pages_and_copied_samples_do_not(tmp_path: Path) -> None:
    """What the README's tour promises: a key pair made with ssh-keygen is a critical finding;
    AWS's documented example key and a GitHub token with a bad checksum do not page."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    key = tmp_path / "deploy_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "trial", "-f", str(key)], check=True
    )
    sample = "AKIA" + "IOSFODNN7" + "EXAMPLE"  # AWS's documented example, split as in fakecreds
    bad_token = fakecreds.github_token(random.Random(7), valid=False)
    tarball = npm_tarball(
        tmp_path / "trial.tgz",
        {
            "deploy_key": key.read_bytes(),
            "lib/config.js": f'const id = "{sample}";\nconst gh = "{bad_token}";\n',
        },
    )
    done = watcher("scan", str(tarball), "--format", "json")
    findings = {(f["rule"], f["severity"]) for f in json.loads(done.stdout)["findings"]}
    assert ("private-key", "critical") in findings
    assert ("github-token", "low") in findings, "a bad checksum is reported low, below page_at"
    assert not any(rule.startswith("aws") for rule, _ in findings), findings
