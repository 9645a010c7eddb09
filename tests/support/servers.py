"""Servers on loopback for the tests: free ports, waiting for a listener, nbdkit started and stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time

import pytest


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: run scripts/install-deps (as root) first")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def wait_for_path(path: str, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with status {proc.returncode}")
        if os.path.exists(path):
            return
        time.sleep(0.02)
    raise TimeoutError(f"{path} did not appear after {timeout}s")


class Server:
    """A server process on loopback; `uri` is how a client reaches it."""

    def __init__(self, proc: subprocess.Popen, uri: str, port: int | None = None, socket_path: str | None = None):
        self.proc, self.uri, self.port, self.socket_path = proc, uri, port, socket_path

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_nbdkit(args, *, socket_path: str | None = None, port: int | None = None, extra_env=None,
                 stderr=subprocess.PIPE) -> Server:
    """`nbdkit -f --exit-with-parent ARGS` on a unix socket or a loopback port (a free one by default),
    returned once it accepts connections."""
    cmd = ["nbdkit", "-f", "--exit-with-parent"]
    if socket_path:
        cmd += ["-U", socket_path]
    else:
        port = port or free_port()
        cmd += ["-i", "127.0.0.1", "-p", str(port)]
    cmd += list(args)
    env = dict(os.environ, **(extra_env or {}))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        if socket_path:
            wait_for_path(socket_path, proc)
            return Server(proc, f"nbd+unix:///?socket={socket_path}", socket_path=socket_path)
        wait_for_port(port, proc)
        return Server(proc, f"nbd://127.0.0.1:{port}", port=port)
    except Exception:
        proc.kill()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"nbdkit failed to start: {' '.join(cmd)}\n{err}")


@contextlib.contextmanager
def running_nbdkit(*args: str):
    """nbdkit for a block of code, for module-scoped fixtures (the `nbdkit` fixture is per test).
    Its stderr is discarded: a long run's messages must not fill a pipe nobody reads."""
    require_tool("nbdkit")
    server = start_nbdkit(args, stderr=subprocess.DEVNULL)
    try:
        yield server
    finally:
        server.stop()
