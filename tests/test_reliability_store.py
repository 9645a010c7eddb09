"""Nothing lost: locks on overlays, maps and targets; sizes refused up front; files that are not what they
seem."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.badnbd import BadServer

try:
    from nbdboot.disk.lock import holder_pid
except ImportError:      # the code before locks: these tests must still run there, and fail
    holder_pid = None

MiB = 1 << 20
# A boot sector that says it is up, then waits in a loop: a run that holds its files until told to stop.
SPIN = bytes.fromhex("b40eb02acd10") + b"\xfb\xeb\xfe"   # mov ah,0Eh; mov al,'*'; int 10h; sti; jmp $


def nbdboot(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "nbdboot", *argv], capture_output=True, text=True,
                          timeout=timeout)


def spin_image(path: Path, size: int = 4 * MiB) -> Path:
    sector = bytearray(512)
    sector[:len(SPIN)] = SPIN
    sector[510:512] = b"\x55\xaa"
    with open(path, "wb") as f:
        f.write(sector)
        f.write(os.urandom(64 * 1024))     # some data for the copier and the fingerprint
        f.truncate(size)
    return path


class Running:
    """`nbdboot run ...` in the background until it holds `locked` (a file it must lock)."""

    def __init__(self, *argv, locked: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "run", "--headless", "--timeout", "60", *argv],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if locked.exists() and holder_pid is None:
                time.sleep(1.0)
                return
            if locked.exists():
                fd = os.open(locked, os.O_RDONLY)
                try:
                    if holder_pid(fd) == self.proc.pid:
                        return
                finally:
                    os.close(fd)
            assert self.proc.poll() is None, self.proc.communicate()
            time.sleep(0.05)
        raise AssertionError(f"{locked} never locked by {self.proc.pid}")

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# -- locks ------------------------------------------------------------------------------------------------

def test_a_second_run_on_the_same_overlay_is_refused_and_the_first_keeps_its_file(tmp_path):
    image = spin_image(tmp_path / "disk.img")
    overlay = tmp_path / "same.ov"
    first = Running("--image", str(image), "--overlay", str(overlay), locked=overlay)
    try:
        second = nbdboot("run", "--image", str(image), "--overlay", str(overlay), "--headless", "--timeout", "5")
        assert second.returncode == 6
        assert one_line(second) == (f"nbdboot: error: {overlay} (overlay) is in use by process {first.proc.pid}; "
                                    "stop it first")
        discard = nbdboot("overlay", "discard", str(overlay))
        assert discard.returncode == 6 and f"process {first.proc.pid}" in one_line(discard)
        commit = nbdboot("overlay", "commit", str(overlay), "--to", "nbd://127.0.0.1:1/")
        assert commit.returncode == 6
    finally:
        code, err = first.stop()
    assert code == 143, err
    info = nbdboot("overlay", "info", str(overlay))
    assert info.returncode == 0 and "guest blocks:" in info.stdout


def test_deploy_restart_and_a_second_deploy_are_refused_while_run_deploys_to_the_target(tmp_path):
    image = spin_image(tmp_path / "disk.img")
    target = tmp_path / "target.img"
    first = Running("--image", str(image), "--deploy-to", str(target), locked=target)
    try:
        for extra in (["--restart"], []):
            other = nbdboot("deploy", str(image), str(target), *extra)
            assert other.returncode == 6, other.stderr
            # resuming checks the map first, --restart the target: either way the holder is named
            assert one_line(other) in (
                f"nbdboot: error: {target} (deploy/restore target) is in use by process {first.proc.pid}; stop it first",
                f"nbdboot: error: {target}.nbdboot-map (block map) is in use by process {first.proc.pid}; stop it first")
        restore = nbdboot("restore", str(image), str(target))
        assert restore.returncode == 6
    finally:
        code, err = first.stop()
    assert code == 143, err
    assert "copy complete" in err
    assert target.read_bytes() == image.read_bytes()


def test_overlay_commit_to_an_export_with_other_contents_is_refused(tmp_path, nbdkit):
    from nbdboot.disk.nbd import NbdDevice
    from nbdboot.disk.overlay import open_overlay
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    a.write_bytes(os.urandom(MiB))
    b.write_bytes(os.urandom(MiB))          # same size, other contents (another filesystem)
    before = b.read_bytes()
    src, dst = nbdkit("file", str(a)), nbdkit("file", str(b))
    overlay = tmp_path / "a.ov"
    disk = open_overlay(NbdDevice(src.uri, read_only=True), str(overlay), source_spec=src.uri)
    disk.pwrite(b"\xfa" * 8192, 0)
    disk.close()
    result = nbdboot("overlay", "commit", str(overlay), "--to", dst.uri)
    assert result.returncode == 2
    assert "made from a different source" in one_line(result)
    assert b.read_bytes() == before
    ok = nbdboot("overlay", "commit", str(overlay), "--to", src.uri)     # its own export still takes it
    assert ok.returncode == 0, ok.stderr
    assert a.read_bytes()[:8192] == b"\xfa" * 8192


@pytest.mark.parametrize("how", ["same path", "hard link", "symlink"])
def test_copy_refuses_its_own_source(tmp_path, how):
    image = tmp_path / "same.img"
    data = os.urandom(MiB)
    image.write_bytes(data)
    dest = image
    if how == "hard link":
        dest = tmp_path / "link.img"
        os.link(image, dest)
    elif how == "symlink":
        dest = tmp_path / "sym.img"
        dest.symlink_to(image)
    result = nbdboot("copy", str(image), str(dest))
    assert result.returncode == 2
    assert "is the source" in one_line(result)
    assert image.read_bytes() == data


def test_copy_refuses_an_export_onto_itself(nbdkit, tmp_path):
    image = tmp_path / "x.img"
    data = os.urandom(MiB)
    image.write_bytes(data)
    srv = nbdkit("file", str(image))
    result = nbdboot("copy", srv.uri, srv.uri)
    assert result.returncode == 2 and "is the source" in one_line(result)
    assert image.read_bytes() == data


# -- sizes ------------------------------------------------------------------------------------------------

def _filesystem_refuses(directory: Path, size: int) -> bool:
    probe = directory / "probe"
    with open(probe, "wb") as f:
        try:
            f.truncate(size)
            refused = False
        except OSError:
            refused = True
    probe.unlink()
    return refused


@pytest.mark.parametrize("argv", [
    ["deploy", "URI", "T/target.img"],
    ["restore", "URI", "T/target.img"],
    ["copy", "URI", "T/copy.img"],
    ["run", "URI", "--deploy-to", "T/target.img", "--headless", "--timeout", "5"],
    ["run", "--restore-from", "URI", "--to", "T/target.img", "--headless", "--timeout", "5"],
    ["run", "URI", "--overlay", "T/o.ov", "--headless", "--timeout", "5"],
])
def test_an_export_too_large_for_the_filesystem_is_refused_in_one_line_leaving_nothing(tmp_path, nbdkit, argv):
    # nbdkit memory 20T on ext4 (16 TiB files at most): EFBIG tracebacks and a 0-byte target plus a map before
    work = tmp_path / "work"
    work.mkdir()
    if not _filesystem_refuses(work, 20 << 40):
        pytest.skip("this filesystem takes 20 TiB files")
    srv = nbdkit("memory", "20T")
    existing = work / "copy.img"
    if argv[0] == "copy":
        existing.write_bytes(b"keep me")       # a copy that cannot fit must not empty the destination
    result = nbdboot(*[a.replace("URI", srv.uri).replace("T/", f"{work}/") for a in argv])
    assert result.returncode == 6, result.stderr
    assert "larger than" in one_line(result)
    left = sorted(p.name for p in work.iterdir())
    assert left == (["copy.img"] if argv[0] == "copy" else []), left
    if argv[0] == "copy":
        assert existing.read_bytes() == b"keep me"


@pytest.mark.parametrize("argv", [
    ["deploy", "URI", "T/target.img"],
    ["run", "URI", "--overlay", "T/o.ov", "--headless", "--timeout", "5"],
])
def test_an_export_of_2_63_minus_512_bytes_is_refused_without_a_traceback(tmp_path, argv):
    work = tmp_path / "work"
    work.mkdir()
    with BadServer("huge") as srv:
        result = nbdboot(*[a.replace("URI", srv.uri).replace("T/", f"{work}/") for a in argv])
    assert result.returncode == 6, result.stderr
    assert "larger than" in one_line(result)
    assert list(work.iterdir()) == []


def test_copy_of_a_huge_export_to_null_stops_on_sigterm(tmp_path):
    with BadServer("huge") as srv:
        proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "copy", srv.uri, "null:"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 143 and time.monotonic() - t0 < 1, err
    assert err.strip().splitlines()[-1] == "nbdboot: terminated by SIGTERM"


# -- servers that lie ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, argv, text", [
    ("list-flood", ["ls", "URI"], "more than 10000 entries in reply to NBD_OPT_LIST"),
    ("extents-past-end", ["copy", "URI", "T/out.img"], "past the end of the 1048576-byte export"),
    ("extents-past-end", ["deploy", "URI", "T/out.img"], "past the end of the 1048576-byte export"),
    ("bad-block-size", ["info", "URI"], "invalid minimum block size 3: it MUST be a power of 2"),
    ("bad-block-size", ["copy", "URI", "null:"], "invalid minimum block size 3"),
])
def test_a_misbehaving_server_gets_one_line_and_exit_3(tmp_path, mode, argv, text):
    with BadServer(mode) as srv:
        t0 = time.monotonic()
        result = nbdboot(*[a.replace("URI", srv.uri).replace("T/", f"{tmp_path}/") for a in argv])
        took = time.monotonic() - t0
    assert result.returncode == 3, result.stderr
    assert text in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert took < 10


def test_ls_of_an_endless_list_uses_bounded_memory():
    import resource

    def limit():   # the unbounded list grew to 470 MB; a MemoryError would be a traceback and exit 1
        resource.setrlimit(resource.RLIMIT_AS, (256 << 20, 256 << 20))

    with BadServer("list-flood") as srv:
        proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "ls", srv.uri], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, preexec_fn=limit)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "Traceback" not in err


# -- files that are not what they seem ----------------------------------------------------------------------

def test_a_truncated_overlay_is_refused_by_info_and_run(tmp_path):
    image = spin_image(tmp_path / "disk.img")
    overlay = tmp_path / "o.ov"
    first = Running("--image", str(image), "--overlay", str(overlay), locked=overlay)
    first.stop()
    with open(overlay, "r+b") as f:
        f.truncate(os.path.getsize(overlay) // 2)
    info = nbdboot("overlay", "info", str(overlay))
    assert info.returncode == 2 and "truncated overlay" in one_line(info)
    run = nbdboot("run", "--image", str(image), "--overlay", str(overlay), "--headless", "--timeout", "5")
    assert run.returncode == 2 and "truncated overlay" in one_line(run)


def test_an_empty_overlay_file_is_refused_by_run_as_by_info(tmp_path):
    image = spin_image(tmp_path / "disk.img")
    overlay = tmp_path / "o.ov"
    overlay.write_bytes(b"")
    info = nbdboot("overlay", "info", str(overlay))
    run = nbdboot("run", "--image", str(image), "--overlay", str(overlay), "--headless", "--timeout", "5")
    assert info.returncode == 2, info.stderr
    assert run.returncode == 2 and "empty (0 bytes)" in one_line(run)
    assert overlay.read_bytes() == b""


def test_image_on_a_directory_says_so(tmp_path):
    result = nbdboot("run", "--image", str(tmp_path), "--headless", "--timeout", "5")
    assert result.returncode == 6 and "is a directory" in one_line(result)


def test_image_and_disk_naming_one_file_is_refused(tmp_path):
    image = spin_image(tmp_path / "disk.img")
    result = nbdboot("run", "--image", str(image), "--disk", str(image), "--headless", "--timeout", "5")
    assert result.returncode == 2 and "same file" in one_line(result)


def test_serve_unix_refuses_a_live_socket_and_leaves_no_socket_file(tmp_path):
    image = spin_image(tmp_path / "disk.img")
    path = tmp_path / "nbd.sock"
    proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "serve", str(image), "--unix", str(path)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = nbdboot("serve", str(image), "--unix", str(path), timeout=20)
        assert second.returncode == 2
        assert "a server is listening on it" in one_line(second)
        with socket.socket(socket.AF_UNIX) as s:      # the first server still answers
            s.connect(str(path))
            assert s.recv(8) == b"NBDMAGIC"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 143
    assert not path.exists()
    # a socket file left behind by a server that died is taken over
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "serve", str(image), "--unix", str(path)],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line.startswith("nbdboot: serving nbd+unix"), line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
