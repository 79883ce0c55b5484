"""Real servers for the served-target tests: one venv per server, built once and cached, and the
server started in its own process group on loopback, stopped by killing the group.

Why venvs of their own: the servers pin numpy, pydantic, fastapi, protobuf (and pull ray or
kubernetes clients) at versions that need not fit the harness's environment, and they are
separate processes anyway. A venv is keyed by its name and a hash of its pinned requirements and
of the interpreter that made it, so a pin change builds a new one and an unchanged one is reused
across runs (CI's first run pays the install, later runs start at once). A file lock keeps two
pytest-xdist workers from building the same venv twice: the second waits and then reuses it.

Generic on purpose (a name, a requirements list, an interpreter, a command, a ready URL): the
kserve-v2 tests start MLServer and KServe with it, the openai tests LitServe.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Overridable so a CI cache step (or a developer with a small home) can put the venvs elsewhere.
CACHE_ROOT_ENV = "BENCH_TEST_SERVERS_DIR"
_COMPLETE = ".complete"  # written last: a venv without it is a build that died half-way


def cache_root() -> Path:
    env = os.environ.get(CACHE_ROOT_ENV)
    return Path(env) if env else Path.home() / ".cache" / "bench-test-servers"


@dataclass(frozen=True)
class ServerVenv:
    """A server's environment: `requirements` are pip requirement strings, pinned (==) so that the
    cache key names exactly what is installed; `python` is the interpreter the venv is made from."""

    name: str
    requirements: tuple[str, ...]
    python: str = field(default_factory=lambda: getattr(sys, "_base_executable", sys.executable))
    build_timeout_s: float = 1200.0  # a first install of a server with grpc, fastapi, pandas: minutes

    def key(self) -> str:
        text = "\n".join((os.path.realpath(self.python), *self.requirements))
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    @property
    def path(self) -> Path:
        return cache_root() / self.key()

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def executable(self, name: str = "python") -> str:
        return str(self.bin / name)


@dataclass(frozen=True)
class Built:
    venv: ServerVenv
    build_s: float | None  # seconds this call spent building; None: it was cached


def ensure_venv(venv: ServerVenv) -> Built:
    """The venv, built now unless a complete one is cached; raises RuntimeError with pip's last
    lines when the install fails (the half-built directory is removed, so the next run retries)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{venv.key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second xdist worker waits here for the first's build
        if (venv.path / _COMPLETE).exists():
            return Built(venv, None)
        shutil.rmtree(venv.path, ignore_errors=True)
        t0 = time.monotonic()
        log = root / f"{venv.key()}.build.log"
        try:
            with open(log, "w") as out:
                _check(subprocess.run([venv.python, "-m", "venv", str(venv.path)], stdout=out,
                                      stderr=subprocess.STDOUT, timeout=120), log)
                _check(subprocess.run([venv.executable(), "-m", "pip", "install", "--disable-pip-version-check",
                                       "--no-input", *venv.requirements], stdout=out, stderr=subprocess.STDOUT,
                                      timeout=venv.build_timeout_s), log)
        except BaseException:
            shutil.rmtree(venv.path, ignore_errors=True)
            raise
        build_s = time.monotonic() - t0
        (venv.path / _COMPLETE).write_text(f"built in {build_s:.0f} s\n" + "\n".join(venv.requirements) + "\n")
        return Built(venv, build_s)


def _check(done: subprocess.CompletedProcess, log: Path) -> None:
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"{done.args[:3]} exited {done.returncode}; the log's end ({log}):\n" + "\n".join(tail))


def free_port() -> int:
    """A TCP port free on loopback now (the server binds it a moment later: a race another process
    could win, which the readiness deadline then reports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running server process, the leader of its own process group."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    ports: dict[str, int]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the whole group (servers fork workers that outlive their parent's PID), then
        SIGKILL to whatever is left after the grace period."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(self.proc.pid):
                break
            time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def http_ready(url: str) -> Callable[[], bool]:
    """A readiness probe: `url` answers 200."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return probe


def start_server(name: str, argv: Sequence[str], ready: Callable[[], bool] | str, *, log_path: Path,
                 ports: dict[str, int] | None = None, env: dict[str, str] | None = None,
                 cwd: Path | None = None, deadline_s: float = 90.0) -> Server:
    """Start `argv` in a new session (its own process group), output to `log_path`, and wait until
    `ready` (a probe, or a URL that must answer 200) within `deadline_s`. A server that exits or
    misses the deadline is stopped and reported with its log's end."""
    probe = http_ready(ready) if isinstance(ready, str) else ready
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    out = open(log_path, "w")
    try:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, cwd=cwd, start_new_session=True)
    finally:
        out.close()  # the child holds its own descriptor
    server = Server(name, proc, log_path, dict(ports or {}))
    deadline = time.monotonic() + deadline_s
    while True:
        if proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"{name} exited with {proc.returncode} before it was ready; its log's end:\n"
                               + _tail(server.log()))
        if probe():
            return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{name} was not ready within {deadline_s:.0f} s; its log's end:\n" + _tail(server.log()))
        time.sleep(0.2)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running(name: str, argv: Sequence[str], ready: Callable[[], bool] | str, **kwargs) -> Iterator[Server]:
    """start_server() for a `with` block (or a module-scoped fixture's yield): stopped on exit."""
    server = start_server(name, argv, ready, **kwargs)
    try:
        yield server
    finally:
        server.stop()
