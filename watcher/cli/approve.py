"""`watcher approve TARGET --server URL [scan flags]`: the pre-publish gate. Scans TARGET exactly
as `watcher scan` does and, only when nothing is at or above `--fail-on`, posts the approval of
that artifact to the service's API (`POST /api/v1/approvals`, token from `WATCHER_API_TOKEN`).
Prints the report and the approval; exits like `watcher scan` (0 approved, 1 findings: nothing
posted, 2 usage or the server refused, with its message)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any
from urllib.parse import urlsplit

import orjson
import structlog

from watcher.cli.context import EXIT_CLEAN, EXIT_USAGE
from watcher.cli.render import render_json, render_sarif, render_text
from watcher.cli.scan import ScannedFile, exit_for, run_scan
from watcher.model import Report

log = structlog.get_logger("watcher.cli.approve")

TOKEN_ENV = "WATCHER_API_TOKEN"  # noqa: S105 - the variable's name, not a credential
ATTEMPTS = 3  # a network error or 5xx is tried again (the server keeps one approval per artifact)
TIMEOUT_S = 30.0
MAX_REPORT_BYTES = 1024 * 1024  # a larger report is posted as its target and summary only


class Refused(Exception):
    """The server did not record the approval; the message says why (its own, when it gave one)."""


def approve_command(args: argparse.Namespace) -> int:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        print(f"watcher: {TOKEN_ENV} is not set (the API token to post approvals)", file=sys.stderr)
        return EXIT_USAGE
    server = args.server.rstrip("/")
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        print(f"watcher: --server: expected an http(s) URL, got {args.server!r}", file=sys.stderr)
        return EXIT_USAGE
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        print(
            "watcher: warning: --server is plain http: the API token crosses the network "
            "unencrypted (put TLS in front of the API)",
            file=sys.stderr,
        )
    report, files = run_scan(args)
    scanned = exit_for(report, args.fail_on)
    if scanned != EXIT_CLEAN:
        _print(report, None, args.format)
        print(
            f"watcher: not approved: findings at or above {args.fail_on} (nothing posted)",
            file=sys.stderr,
        )
        return scanned
    if len(files) != 1:
        _print(report, None, args.format)
        print(
            f"watcher: TARGET is {len(files)} files; approve one artifact at a time",
            file=sys.stderr,
        )
        return EXIT_USAGE
    target = report.target
    if not (target.ecosystem and target.name and target.version):
        _print(report, None, args.format)
        print(
            "watcher: cannot tell which package and version TARGET is (no package metadata in "
            "it): nothing posted",
            file=sys.stderr,
        )
        return EXIT_USAGE
    body = approval_body(report, files[0])
    try:
        approval, status = asyncio.run(post_approval(server, token, body))
    except Refused as exc:
        _print(report, None, args.format)
        print(f"watcher: the server refused the approval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    log.info(
        "approval_posted",
        ecosystem=target.ecosystem,
        package=target.name,
        version=target.version,
        sha256=files[0].sha256,
        repeated=status == 200,
    )
    _print(report, approval, args.format)
    return EXIT_CLEAN


def approval_body(report: Report, file: ScannedFile) -> dict[str, Any]:
    """What is posted: the artifact's identity and digests (npm's integrity too), with the
    gate's report."""
    target = report.target
    full = orjson.loads(render_json(report))
    if len(orjson.dumps(full)) > MAX_REPORT_BYTES:  # the server takes 4 MiB: keep the gist
        full = {
            "target": full.get("target"),
            "summary": full.get("summary"),
            "truncated": True,
        }
    body: dict[str, Any] = {
        "ecosystem": target.ecosystem,
        "name": target.name,
        "version": target.version,
        "sha256": file.sha256,
        "report": full,
    }
    if target.ecosystem == "npm":
        body["integrity"] = file.integrity
    return body


async def post_approval(
    server: str, token: str, body: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """POST it (tried again on a network error or 5xx); (the stored approval, 201 or 200)."""
    import aiohttp  # noqa: PLC0415 - only when posting

    url = f"{server}/api/v1/approvals"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = orjson.dumps(body)
    problem = "no answer"
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with session.post(url, data=data, headers=headers) as response:
                    text = await response.text()
                    if response.status in (200, 201):
                        answer = json.loads(text)
                        if not isinstance(answer, dict):
                            raise Refused(f"{url} answered {response.status} without an approval")
                        return answer, response.status
                    problem = f"{response.status} {_message(text)}"
                    if response.status < 500:
                        raise Refused(problem)
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{url}: {type(exc).__name__}: {exc}"
            if attempt < ATTEMPTS:
                await asyncio.sleep(attempt)
    raise Refused(problem)


def _message(text: str) -> str:
    try:
        answer = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return str(answer["error"])
    return text.strip()[:300]


def approval_line(approval: dict[str, Any]) -> str:
    return (
        f"approved: {approval.get('ecosystem')}:{approval.get('name')}@{approval.get('version')} "
        f"sha256 {approval.get('sha256')} (approval {approval.get('id')}, token "
        f"{approval.get('token_name')}, {approval.get('created_at')})\n"
    )


def _print(report: Report, approval: dict[str, Any] | None, fmt: str) -> None:
    """text: the report, then the approval line; json: {"report", "approval"}; sarif: the SARIF
    log on stdout, the approval line on stderr."""
    if fmt == "json":
        combined = {"report": orjson.loads(render_json(report)), "approval": approval}
        sys.stdout.write(json.dumps(combined, indent=2) + "\n")
    elif fmt == "sarif":
        sys.stdout.write(render_sarif(report) + "\n")
        if approval is not None:
            sys.stderr.write(approval_line(approval))
    else:
        sys.stdout.write(render_text(report, color=sys.stdout.isatty()))
        if approval is not None:
            sys.stdout.write(approval_line(approval))
