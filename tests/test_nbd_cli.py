"""`nbdboot serve|info|ls|copy` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nbdboot.nbd.client import NbdClient
from nbdboot.nbd.errors import NbdCommandError
from support.servers import free_port, require_tool, wait_for_path, wait_for_port

MiB = 1 << 20


def nbdboot(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "nbdboot", *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode:
        raise AssertionError(f"nbdboot {' '.join(args)} -> {r.returncode}\n{r.stderr}")
    return r


@pytest.fixture
def serve(tmp_path):
    procs = []

    def start(*args):
        sock = str(tmp_path / f"serve{len(procs)}.sock")
        proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "serve", "--unix", sock, *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        wait_for_path(sock, proc)
        return f"nbd+unix:///?socket={sock}", sock

    yield start
    for p in procs:
        p.terminate()
        p.wait(5)


def _sparse_image(path, size=16 * MiB):
    with open(path, "wb") as f:
        f.truncate(size)
        for at in (0, 5 * MiB + 123, size - 4096):
            f.seek(at)
            f.write(os.urandom(4096))


def test_serve_info_ls(serve, tmp_path):
    require_tool("nbdinfo")
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    _sparse_image(a)
    _sparse_image(b, 4 * MiB)
    uri, sock = serve(str(a), str(b), "--name", "alpha", "--name", "beta", "--read-only")
    listed = [line for line in nbdboot("ls", uri).stdout.splitlines() if line.startswith(("export=", "\tdesc"))]
    assert listed == ['export="alpha":', "\tdescription: a.img", 'export="beta":', "\tdescription: b.img"]
    ours = json.loads(nbdboot("info", "--json", f"nbd+unix:///beta?socket={sock}").stdout)["exports"][0]
    theirs = json.loads(subprocess.run(["nbdinfo", "--json", f"nbd+unix:///beta?socket={sock}"],
                                       check=True, capture_output=True, text=True).stdout)["exports"][0]
    for key in ("export-size", "is_read_only", "can_flush", "can_trim", "can_zero", "can_cache",
                "can_multi_conn", "block_size_minimum", "block_size_preferred", "block_size_maximum", "contexts"):
        assert ours[key] == theirs[key], key
    text = nbdboot("info", f"nbd+unix:///alpha?socket={sock}").stdout
    assert "export-size: 16777216" in text and "base:allocation" in text
    with NbdClient(f"nbd+unix:///alpha?socket={sock}") as c:
        assert c.read_only
        with pytest.raises(NbdCommandError):
            c._check = lambda *a, **k: None  # force the request out: the server must refuse it
            c.pwrite(b"x" * 512, 0)


def test_serve_tcp_port_and_clients_at_once(tmp_path):
    img = tmp_path / "t.img"
    _sparse_image(img, 4 * MiB)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "serve", str(img), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        clients = [NbdClient(f"127.0.0.1:{port}") for _ in range(4)]
        for i, c in enumerate(clients):
            c.pwrite(bytes([i + 1]) * 4096, i * 4096)
        for c in clients:
            assert c.pread(4 * 4096, 0) == b"".join(bytes([i + 1]) * 4096 for i in range(4))
            c.close()
    finally:
        proc.terminate()
        proc.wait(5)
    assert img.read_bytes()[:4096] == b"\x01" * 4096


def test_copy_nbd_to_file_identical_to_nbdcopy_and_sparse(nbdkit, tmp_path):
    require_tool("nbdcopy")
    srv = nbdkit("sparse-random", "64M", "seed=42", "percent=5", "runlength=262144")
    ours, theirs = tmp_path / "ours.img", tmp_path / "theirs.img"
    nbdboot("copy", srv.uri, str(ours))
    subprocess.run(["nbdcopy", srv.uri, str(theirs)], check=True)
    assert ours.stat().st_size == theirs.stat().st_size == 64 * MiB
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours.stat().st_blocks * 512 < 16 * MiB  # zero runs stayed holes
    # without the allocation map, zero blocks are found by looking at the data
    nbdboot("copy", "--no-extents", srv.uri, str(ours))
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours.stat().st_blocks * 512 < 16 * MiB


def test_copy_file_to_nbd_and_nbd_to_nbd(nbdkit, tmp_path):
    require_tool("nbdcopy")
    src = tmp_path / "src.img"
    _sparse_image(src)
    dst = nbdkit("memory", "16M")
    nbdboot("copy", str(src), dst.uri)
    back = tmp_path / "back.img"
    subprocess.run(["nbdcopy", dst.uri, str(back)], check=True)
    assert back.read_bytes() == src.read_bytes()
    # NBD -> NBD, destination pre-filled with junk that the zero runs must clear
    dst2 = nbdkit("memory", "16M")
    with NbdClient(dst2.uri) as c:
        c.pwrite(b"\xff" * MiB, 8 * MiB)
    nbdboot("copy", "--requests", "4", "--request-size", "65536", dst.uri, dst2.uri)
    subprocess.run(["nbdcopy", dst2.uri, str(back)], check=True)
    assert back.read_bytes() == src.read_bytes()


def test_copy_to_null_and_over_existing_file(nbdkit, tmp_path):
    srv = nbdkit("pattern", "8M")
    nbdboot("copy", srv.uri, "null:")
    nbdboot("copy", srv.uri, "/dev/null")
    out = tmp_path / "existing.img"
    out.write_bytes(b"\xee" * (20 * MiB))   # longer and full of junk
    r = nbdboot("copy", "-v", srv.uri, str(out))
    data = out.read_bytes()
    assert len(data) == 8 * MiB
    assert data[8 * 4096:8 * 4096 + 8] == (8 * 4096).to_bytes(8, "big")
    assert "copied 8388608 bytes" in r.stderr


@pytest.mark.parametrize("args, code, text", [
    (["info", "nbd://127.0.0.1:1/"], 3, "cannot connect"),
    (["info", "ftp://x"], 2, "unsupported URI scheme"),
    (["ls", "nbd+unix:///?socket=/nonexistent/sock"], 3, "cannot connect"),
    (["copy", "/nonexistent.img", "null:"], 6, "cannot open"),
    (["copy", "null:", "/tmp/x"], 2, "cannot be a copy source"),
    (["copy", "--request-size", "1000", "a", "b"], 2, "power of two"),
    (["serve", "/nonexistent.img"], 2, "no such file"),
])
def test_bad_input_is_one_line_and_an_exit_code(args, code, text):
    r = nbdboot(*args, check=False)
    assert r.returncode == code, r.stderr
    assert text in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_copy_to_smaller_nbd_destination_fails_cleanly(nbdkit):
    src, dst = nbdkit("pattern", "2M"), nbdkit("memory", "1M")
    r = nbdboot("copy", src.uri, dst.uri, check=False)
    assert r.returncode == 2 and "smaller" in r.stderr and "Traceback" not in r.stderr


def test_copy_from_failing_server_reports_nbd_error(nbdkit):
    srv = nbdkit("--filter=error", "pattern", "4M", "error=EIO", "error-pread-rate=100%")
    r = nbdboot("copy", srv.uri, "null:", check=False)
    assert r.returncode == 3 and "EIO" in r.stderr and "Traceback" not in r.stderr


def test_copy_progress_bar_on_request(nbdkit):
    srv = nbdkit("pattern", "4M")
    r = nbdboot("copy", "-p", srv.uri, "null:")
    assert "100.0%" in r.stderr and "[####" in r.stderr
    quiet = nbdboot("copy", srv.uri, "null:")   # not a terminal: no bar
    assert quiet.stderr == ""
