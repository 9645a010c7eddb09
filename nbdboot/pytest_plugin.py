"""pytest plugin: boot images in tests (loaded through the `pytest11` entry point of the nbdboot package).

Fixtures:
  nbdboot_server(path, *, server="embedded"|"nbdkit", read_only=False, name="") -> Served
      serves a file on loopback (a free port, so parallel workers never collide); `.uri` reaches it.
  nbdboot_run(uri=None, **options) -> nbdboot.Boot   (also available as `boot`)
      boots like `nbdboot.boot(...)`; every boot is closed at the end of the test. When the test fails,
      each boot's final screen is added to the report (a "nbdboot screen" section) and saved as
      nbdboot-screen-N.txt in the test's tmp_path.
Marker:
  @pytest.mark.nbdboot_timeout(SECONDS): every wait_for/run in the test ends by SECONDS after the test
      started (WaitTimeout). The ini option `nbdboot_timeout` sets a default for all tests.
Works under pytest-xdist: each boot has its own embedded server on port 0 and its own temporary files.

Nothing heavy is imported until a fixture is used: the plugin loads in every pytest run of the environment.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

if TYPE_CHECKING:
    from nbdboot.api import Boot

_BOOTS = pytest.StashKey[list]()
_DEADLINE = pytest.StashKey[float]()


def pytest_addoption(parser) -> None:
    parser.addini("nbdboot_timeout", "default seconds for every nbdboot boot's waits in a test (none if empty)",
                  default="")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "nbdboot_timeout(seconds): bound every nbdboot wait in this test")


def _timeout_for(item) -> float | None:
    marker = item.get_closest_marker("nbdboot_timeout")
    if marker is not None:
        seconds = marker.args[0] if marker.args else marker.kwargs.get("seconds")
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            raise pytest.UsageError(f"{item.nodeid}: nbdboot_timeout takes a positive number of seconds")
        return float(seconds)
    default = item.config.getini("nbdboot_timeout")
    return float(default) if default else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    seconds = _timeout_for(item)
    if seconds is not None:
        item.stash[_DEADLINE] = time.monotonic() + seconds


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    boots = item.stash.get(_BOOTS, None)
    if boots and report.failed and report.when == "call":
        for n, pc in enumerate(boots, 1):
            try:
                screen = pc.screen
            except Exception as e:  # noqa: BLE001 - a report must not fail on a dead machine
                screen = f"(screen unreadable: {e})"
            title = f"nbdboot screen {n} ({pc.uri}, {pc.outcome})"
            report.sections.append((title, screen))
            where = getattr(item, "funcargs", {}).get("tmp_path")
            if where is not None:
                try:
                    (where / f"nbdboot-screen-{n}.txt").write_text(screen, encoding="utf-8")
                except OSError:
                    pass


class Served:
    """An export being served on loopback."""

    def __init__(self, uri: str, stop: Callable[[], None]):
        self.uri = uri
        self._stop: Callable[[], None] | None = stop

    def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def __repr__(self) -> str:
        return f"<Served {self.uri}>"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_embedded(path: str, read_only: bool, name: str) -> Served:
    from nbdboot.disk.file import FileDevice
    from nbdboot.nbd.server import NbdServer
    device = FileDevice(path, read_only=read_only)
    server = NbdServer({name: device}, host="127.0.0.1", port=0, read_only=read_only)
    try:
        server.start()
    except BaseException:
        device.close()
        raise

    def stop() -> None:
        server.stop()
        device.close()
    return Served(server.uri_for(name), stop)


def _serve_nbdkit(path: str, read_only: bool, name: str, timeout: float = 10.0) -> Served:
    nbdkit = shutil.which("nbdkit") or ""
    if not nbdkit:
        pytest.fail("nbdboot_server(server='nbdkit'): nbdkit is not installed")
    port = _free_port()
    cmd = [nbdkit, "-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", str(port)]
    if read_only:
        cmd.append("-r")
    if name:
        cmd += ["-e", name]
    cmd += ["file", path]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            pytest.fail(f"nbdkit exited with status {proc.returncode}: {err.strip()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"nbdkit did not listen on 127.0.0.1:{port} within {timeout:g}s")
            time.sleep(0.02)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()
    return Served(f"nbd://127.0.0.1:{port}/{name}", stop)


@pytest.fixture
def nbdboot_server() -> Iterator[Callable[..., Served]]:
    """Factory: nbdboot_server(path, server="embedded"|"nbdkit", read_only=False, name="") -> Served."""
    served: list[Served] = []

    def serve(path: str | os.PathLike, *, server: str = "embedded", read_only: bool = False,
              name: str = "") -> Served:
        path = os.fspath(path)
        if not os.path.isfile(path):
            pytest.fail(f"nbdboot_server: no such file: {path}")
        if server == "embedded":
            s = _serve_embedded(path, read_only, name)
        elif server == "nbdkit":
            s = _serve_nbdkit(path, read_only, name)
        else:
            raise ValueError(f"nbdboot_server: server must be 'embedded' or 'nbdkit', not {server!r}")
        served.append(s)
        return s

    yield serve
    for s in reversed(served):
        s.stop()


@pytest.fixture
def nbdboot_run(request) -> Iterator[Callable[..., "Boot"]]:
    """Factory: nbdboot_run(uri=None, image=..., drive=..., keys=..., ...) -> nbdboot.Boot, closed after the
    test; a failing test's report shows each boot's screen."""
    from nbdboot.api import boot

    boots = request.node.stash.setdefault(_BOOTS, [])
    deadline = request.node.stash.get(_DEADLINE, None)

    def start(uri: str | os.PathLike | None = None, **options: Any) -> "Boot":
        for key in ("image", "overlay", "deploy_to", "to", "map_path"):
            if isinstance(options.get(key), os.PathLike):
                options[key] = os.fspath(options[key])
        pc = boot(os.fspath(uri) if uri is not None else None, **options)
        pc.deadline = deadline
        boots.append(pc)
        return pc

    yield start
    for pc in reversed(boots):
        pc.close()


@pytest.fixture
def boot(nbdboot_run):
    """The nbdboot_run factory under a shorter name."""
    return nbdboot_run
