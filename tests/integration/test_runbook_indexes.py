"""A PyPI runbook for an index that is not Warehouse checks what that index really serves: its
verify command, run against a real pypiserver, counts the release's files while they are there
and 0 once they are gone, while a neighbouring version (1.4.0.post1) stays and is not counted."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from pypi_servers import PypiServer, build_sdist, build_wheel
from service_harness import unique

from watcher.ecosystems.pypi.settings import is_warehouse_index
from watcher.incidents.runbook import RunbookInputs, build_runbook
from watcher.model import Category, Ecosystem, Finding, Severity


def count(command: str) -> int:
    shown = subprocess.run(
        ["bash", "-c", command.split("   #", 1)[0]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return int(shown.stdout.strip() or 0)


def test_the_verify_step_reads_the_simple_api_file_list(
    pypiserver: PypiServer, tmp_path: Path
) -> None:
    name = unique("rb-idx").replace("-", "_")
    out = tmp_path / "dists"
    files = [build_sdist(out, name, "1.4.0"), build_wheel(out, name, "1.4.0")]
    pypiserver.upload([*files, build_sdist(out / "post", name, "1.4.0.post1")])
    assert is_warehouse_index(pypiserver.simple_url) is False
    finding = Finding(
        "dotenv-file", Category.SENSITIVE_FILE, Severity.HIGH, "pkg/.env", "dotenv file shipped"
    )
    steps = build_runbook(
        RunbookInputs(
            Ecosystem.PYPI,
            name,
            "1.4.0",
            [finding],
            datetime.now(UTC),
            registry_url=pypiserver.simple_url,
            index_warehouse=False,
        ),
        revoke_hints={},
    )
    (verify,) = [s for s in steps if s.text.startswith("Verify")]
    assert verify.command is not None
    assert count(verify.command) == 2, "the sdist and the wheel of 1.4.0, not 1.4.0.post1"
    for built in files:  # what deleting the release means on pypiserver
        (pypiserver.packages / built.name).unlink()
    assert count(verify.command) == 0
    assert not any("/manage/" in (s.url or "") + s.text for s in steps)
