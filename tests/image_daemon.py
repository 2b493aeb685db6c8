"""A private Docker engine for the image check: its own containerd and dockerd with every path
(data, state, sockets, pid files, logs) under one directory, no bridge network, no iptables rules,
and stopped by PID. It never talks to a system daemon: the client gets DOCKER_HOST and DOCKER_CONFIG
for this engine only, and dockerd is handed our containerd (left to itself it would adopt a system
containerd it finds running).

`python -m tests.image_daemon stop DIR` stops an engine left behind by a killed run."""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

# version 2, CRI off: a Kubernetes plugin has no business here (it would look for CNI networks)
CONTAINERD_CONFIG = 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n'


class DockerUnavailable(Exception):
    """Docker cannot start on this machine at all; the reason says why."""


def _alive_in(pid_file: Path, root: Path) -> int | None:
    """The PID in `pid_file` if that process still runs with `root` on its command line (so a
    recycled PID of some unrelated process is never signalled)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(root).encode() in cmdline else None


def _terminate(pid: int, grace: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: poll /proc instead
            waited = 0 if Path(f"/proc/{pid}").exists() else pid
        if waited == pid:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


class PrivateDocker:
    """`start()`, then `docker(...)` runs the client against this engine; `stop()` (also at
    interpreter exit and on SIGTERM) stops dockerd, then containerd, by their PIDs."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.sock = self.root / "docker.sock"
        self.dockerd_pid = self.root / "dockerd.pid"
        self.containerd_pid = self.root / "containerd.pid"
        self.containerd_sock = self.root / "containerd.sock"
        self.dockerd_log = self.root / "dockerd.log"
        self._client = ""
        self._lock: IO[str] | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.sock}",
            "DOCKER_CONFIG": str(self.root / "client"),
            "DOCKER_BUILDKIT": "0",  # the classic builder needs no frontend image from a registry
        }

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> None:
        if os.geteuid() != 0:
            raise DockerUnavailable("dockerd needs root and this is not root")
        dockerd = shutil.which("dockerd")
        containerd = shutil.which("containerd")
        if not dockerd or not containerd:
            raise DockerUnavailable(
                "dockerd/containerd are not installed (`make image-check` installs docker.io)"
            )
        # the client that ships with this dockerd: a newer one elsewhere on PATH may insist on
        # BuildKit, which would fetch its frontend from a registry
        beside = Path(dockerd).with_name("docker")
        self._client = str(beside) if beside.exists() else shutil.which("docker") or "docker"
        self.root.mkdir(parents=True, exist_ok=True)
        # one engine per directory, one session at a time; held until stop()
        self._lock = open(self.root / "lock", "w")  # noqa: SIM115
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        stop_stale(self.root)
        (self.root / "client").mkdir(exist_ok=True)
        (self.root / "daemon.json").write_text("{}\n")  # not /etc/docker/daemon.json
        (self.root / "containerd.toml").write_text(CONTAINERD_CONFIG)
        atexit.register(self.stop)
        previous = signal.getsignal(signal.SIGTERM)
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _interrupt)

        self._spawn(
            [
                containerd,
                "--config", str(self.root / "containerd.toml"),
                "--address", str(self.containerd_sock),
                "--root", str(self.root / "containerd-root"),
                "--state", str(self.root / "containerd-state"),
            ],
            self.root / "containerd.log",
            self.containerd_pid,
        )  # fmt: skip
        self._wait(self.containerd_sock.exists, timeout, "containerd")
        self._spawn(
            [
                dockerd,
                "--config-file", str(self.root / "daemon.json"),
                "--containerd", str(self.containerd_sock),
                "--data-root", str(self.root / "data"),
                "--exec-root", str(self.root / "exec"),
                "--pidfile", str(self.dockerd_pid),
                "--host", f"unix://{self.sock}",
                "--cgroup-parent", "/registry-watcher-image-check",
                # no docker0 bridge, no NAT, no iptables: no private-range network is created;
                # builds and runs use --network host or --network none
                "--bridge=none", "--iptables=false", "--ip-masq=false",
            ],
            self.dockerd_log,
            None,
        )  # fmt: skip
        self._wait(self._answers, timeout, "dockerd")

    def _spawn(self, argv: list[str], log: Path, pid_file: Path | None) -> None:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C reaches us, and we stop them in order
            )  # fmt: skip
        self._procs.append(proc)
        if pid_file is not None:
            pid_file.write_text(f"{proc.pid}\n")

    def _answers(self) -> bool:
        result = self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=10)
        return result.returncode == 0

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    self.stop()
                    raise DockerUnavailable(
                        f"{what} exited with {proc.returncode}: {self._log_tail()}"
                    )
            if ready():
                return
            time.sleep(0.2)
        self.stop()
        raise DockerUnavailable(f"{what} did not answer within {timeout:.0f}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        lines: list[str] = []
        for log in (self.root / "containerd.log", self.dockerd_log):
            if log.exists():
                lines += log.read_text(errors="replace").splitlines()[-3:]
        return " | ".join(lines)

    def stop(self) -> None:
        """Idempotent: dockerd first (it stops its containers), then containerd."""
        stop_stale(self.root)
        for proc in self._procs:  # reaped already, or never wrote a pid file
            if proc.poll() is None:
                _terminate(proc.pid, 30)
        self._procs.clear()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # ---- client ----------------------------------------------------------------------------
    def docker(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        stdin: IO[bytes] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self._client, *args],
            env=self.env,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
            )
        return result

    def image_exists(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False, timeout=30).returncode == 0


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM becomes an interrupt, so fixtures and atexit get to stop the engine."""
    raise KeyboardInterrupt(f"signal {signum}")


def stop_stale(root: Path) -> None:
    """Stop an engine under `root` that a killed run left behind (dockerd, then containerd), and
    unmount what it left mounted there."""
    root = root.resolve()
    for pid_file in (root / "dockerd.pid", root / "containerd.pid"):
        pid = _alive_in(pid_file, root)
        if pid is not None:
            _terminate(pid, 30)
    (root / "containerd.pid").unlink(missing_ok=True)
    _unmount_under(root)


def _unmount_under(root: Path) -> None:
    """dockerd keeps the host's network namespace bind-mounted in its exec root after it exits (and
    a killed engine leaves overlay and shm mounts): with the engine down, only mounts under `root`,
    deepest first."""
    prefix = f"{root}/"
    points = [
        line.split()[1].replace("\\040", " ")
        for line in Path("/proc/self/mounts").read_text().splitlines()
    ]
    for point in sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True, check=False)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] != "stop":
        print("usage: python -m tests.image_daemon stop DIR", file=sys.stderr)
        return 2
    stop_stale(Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
