"""A real git repository served over git's smart HTTP: `git http-backend` (git's own CGI program)
behind a local aiohttp server, optionally requiring an `Authorization` header. Repositories are
made at test time with real git."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


def git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cwd or Path.cwd()),
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def bare_repository(
    root: Path, *, tags: tuple[str, ...] = (), annotated: tuple[str, ...] = ()
) -> Path:
    """`root/work` with one commit and the tags, pushed to the bare `root/repo.git`."""
    work = root / "work"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README").write_text("x\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    for tag in tags:
        git("tag", tag, cwd=work)
    for tag in annotated:
        git("tag", "-a", tag, "-m", f"release {tag}", cwd=work)
    bare = root / "repo.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    (bare / "git-daemon-export-ok").touch()
    return bare


def add_tag(bare: Path, tag: str) -> None:
    git("tag", tag, "HEAD", cwd=bare)


@dataclass
class GitHttp:
    url: str  # the repository's URL
    seen_authorization: list[str | None] = field(default_factory=list)


@asynccontextmanager
async def serving_git(bare: Path, *, authorization: str | None = None) -> AsyncIterator[GitHttp]:
    """Serve `bare` at `http://127.0.0.1:PORT/repo.git`; with `authorization`, any request without
    exactly that header gets 401 (git's smart-HTTP auth challenge)."""
    state = GitHttp(url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization")
        state.seen_authorization.append(given)
        if authorization is not None and given != authorization:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'})
        body = await request.read()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(bare.parent),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
        }
        process = await asyncio.create_subprocess_exec(
            HTTP_BACKEND,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, _ = await process.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        return web.Response(status=status, body=payload, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/{bare.name}"
    try:
        yield state
    finally:
        await runner.cleanup()


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers: a URL for timeouts."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/repo.git"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
