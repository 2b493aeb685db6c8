"""A Python base image made from Debian packages, for building the Dockerfile where no image
registry is reachable: `debootstrap` (minbase + python3, python3-venv, ca-certificates, git), a `python`
link, and this machine's CA bundle (pip inside the build reaches the package index through whatever
this machine trusts), imported with `docker import`. The Debian mirror is the one this machine's
apt sources name; nothing here names a host.

The image is tagged by a digest of what went into it and kept in the engine's data root, so the
next run only looks it up."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.image_daemon import PrivateDocker

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates", "git")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = Path("/etc/apt")
REPOSITORY = "registry-watcher-base"


def _deb822_entries(text: str) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields:
            entries.append(fields)
    return entries


def _one_line_entries(text: str) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) > 1 and words[1].startswith("["):  # deb [signed-by=… arch=…] URI suite …
            options_end = next((i for i, w in enumerate(words) if w.endswith("]")), len(words))
            words = words[:1] + words[options_end + 1 :]
        if len(words) >= 4 and words[0] == "deb":
            entries.append(
                {
                    "types": "deb",
                    "uris": words[1],
                    "suites": words[2],
                    "components": " ".join(words[3:]),
                }
            )
    return entries


def debian_mirror(sources: Path = APT_SOURCES, suite: str = SUITE) -> str:
    """The first `deb` source of this machine that serves `suite` with `main`."""
    entries: list[dict[str, str]] = []
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            entries += _deb822_entries(text)
        elif path.suffix == ".list":
            entries += _one_line_entries(text)
    for entry in entries:
        if (
            "deb" in entry.get("types", "").split()
            and suite in entry.get("suites", "").split()
            and "main" in entry.get("components", "").split()
            and entry.get("enabled", "yes").lower() != "no"
        ):
            return entry["uris"].split()[0]
    raise RuntimeError(f"no apt source under {sources} serves {suite} main: cannot debootstrap")


def base_tag() -> str:
    digest = hashlib.sha256()
    digest.update(f"{SUITE} minbase {' '.join(PACKAGES)}\n".encode())
    digest.update(CA_BUNDLE.read_bytes())
    return f"{REPOSITORY}:{SUITE}-{digest.hexdigest()[:12]}"


def ensure_base_image(docker: PrivateDocker, scratch: Path) -> tuple[str, dict[str, float]]:
    """The base image's tag, made when the engine does not have it; and what making it took."""
    tag = base_tag()
    if docker.image_exists(tag):
        return tag, {}
    timings: dict[str, float] = {}
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        started = time.monotonic()
        result = subprocess.run(
            [
                "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                SUITE, str(rootfs), debian_mirror(),
            ],
            capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed:\n{(result.stdout + result.stderr)[-3000:]}")
        timings["debootstrap_s"] = time.monotonic() - started
        _finish_rootfs(rootfs)
        started = time.monotonic()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            docker.docker("import", "-", tag, stdin=tar.stdout, timeout=600)
        finally:
            tar.stdout.close()
            tar.wait()
        timings["import_s"] = time.monotonic() - started
    for line in docker.docker(
        "images", REPOSITORY, "--format", "{{.Repository}}:{{.Tag}}"
    ).stdout.split():
        if line != tag:  # an older base (another CA bundle): nothing refers to it any more
            docker.docker("rmi", line, check=False)
    return tag, timings


def _finish_rootfs(rootfs: Path) -> None:
    python = rootfs / "usr/bin/python"
    python.unlink(missing_ok=True)
    python.symlink_to("python3")
    shutil.copyfile(CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    # the build host's resolver and name, and apt's downloads and lists, do not belong in an image
    (rootfs / "etc/resolv.conf").write_text("")
    (rootfs / "etc/hostname").write_text("")
    for cache in ("var/cache/apt", "var/lib/apt/lists"):
        for child in (rootfs / cache).glob("*"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
