"""Deploy and restore from real NBD servers (nbdkit, qemu-nbd) through the CLI and the engine."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nbdboot.disk.deploy import copy_to_target
from nbdboot.disk.file import FileDevice
from nbdboot.disk.copier import attach_copier
from nbdboot.disk.open import open_store
from support.servers import require_tool, wait_for_path

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def nbdboot(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "nbdboot", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def copied_bytes(stderr: str) -> int:
    m = re.search(r"copied .*?\((\d+) bytes\)", stderr)
    assert m, stderr
    return int(m.group(1))


def same_data(a: Path, b: Path) -> None:
    """a and b read the same, checked through their allocated ranges (holes read as zeroes)."""
    da, db = FileDevice(a, read_only=True), FileDevice(b, read_only=True)
    try:
        assert da.size == db.size
        for dev, other in ((da, db), (db, da)):
            for e in dev.extents(0, dev.size):
                if e.is_zero:
                    continue
                pos = e.offset
                while pos < e.end:
                    n = min(16 * MiB, e.end - pos)
                    assert dev.pread(n, pos) == other.pread(n, pos), f"differ at {pos}"
                    pos += n
    finally:
        da.close()
        db.close()


def test_sparse_8g_export_deploys_its_100m_of_data_not_8g(tmp_path, nbdkit):
    src = tmp_path / "sparse.img"
    rnd = random.Random(4)
    with open(src, "wb") as f:
        f.truncate(8 << 30)
        for k in range(100):   # 100 MiB of data scattered over 8 GiB
            f.seek(k * (80 * MiB) + rnd.randrange(0, 16) * MiB)
            f.write(rnd.randbytes(MiB))
    server = nbdkit("-r", "file", str(src))
    res = nbdboot("deploy", server.uri, str(tmp_path / "t.img"))
    assert res.returncode == 0, res.stderr
    assert copied_bytes(res.stderr) == 100 * MiB
    assert "skipped 7.9 GiB as holes/zeroes" in res.stderr
    target = tmp_path / "t.img"
    assert target.stat().st_size == 8 << 30
    assert target.stat().st_blocks * 512 < 110 * MiB     # the target stayed sparse
    same_data(src, target)


def test_deploy_over_an_old_disk_zeroes_the_sources_holes(tmp_path, nbdkit):
    """A fresh target file is one hole and the copier skips zeroing it; an old disk
    holds data where the source has holes, and those ranges must read as zeroes."""
    src = tmp_path / "src.img"
    rnd = random.Random(5)
    with open(src, "wb") as f:
        f.truncate(32 * MiB)
        for k in range(0, 32, 8):
            f.seek(k * MiB)
            f.write(rnd.randbytes(MiB))
    target = tmp_path / "old-disk.img"
    target.write_bytes(b"\xaa" * (32 * MiB))
    server = nbdkit("-r", "file", str(src))
    res = nbdboot("deploy", server.uri, str(target))
    assert res.returncode == 0, res.stderr
    assert copied_bytes(res.stderr) == 4 * MiB
    assert target.read_bytes() == src.read_bytes()


def page_cached_bytes(path: Path) -> int:
    out = subprocess.run([require_tool("fincore"), "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def test_copier_keeps_only_a_few_mib_of_the_target_in_the_page_cache(tmp_path):
    """Each piece is written out and dropped a few MiB later, not kept until a commit: a deploy
    that fills the page cache with fresh pages ran 3-4x slower on a VM that returns freed
    memory to its host."""
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True).stdout
    if fs.strip() == "tmpfs":
        pytest.skip("on tmpfs the page cache is the file's storage")
    src = tmp_path / "src.img"
    src.write_bytes(random.Random(6).randbytes(48 * MiB))
    target = tmp_path / "t.img"
    store = open_store(FileDevice(src, read_only=True), str(target))
    copier = attach_copier(store, lambda: FileDevice(src, read_only=True), connections=1)
    copier.commit_bytes = copier.commit_interval = 1 << 40   # no commit: the window alone must drop pages
    try:
        while copier.stats.copied_bytes < 48 * MiB:
            assert copier.step("fetch")
            copier.step("store")
        cached = page_cached_bytes(target)
    finally:
        store.close()
    assert cached <= 12 * MiB, f"{cached >> 20} MiB of 48 MiB written still in the page cache"
    assert target.read_bytes() == src.read_bytes()


def test_deploy_uses_several_connections_when_server_advertises_multi_conn(tmp_path, nbdkit):
    src = tmp_path / "src.img"
    src.write_bytes(random.Random(1).randbytes(64 * MiB))
    log = tmp_path / "nbdkit.log"
    server = nbdkit("-r", "--filter=log", "file", str(src), f"logfile={log}")
    res = nbdboot("deploy", "--connections", "4", server.uri, str(tmp_path / "t.img"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "t.img").read_bytes() == src.read_bytes()
    connects = log.read_text().count("Connect ")
    # the guest-side source, 4 copier connections and the copier's block-status connection
    assert connects >= 5, log.read_text()[:2000]


def test_deploy_without_multi_conn_uses_one_copier_connection(tmp_path, nbdkit):
    src = tmp_path / "src.img"
    src.write_bytes(random.Random(2).randbytes(8 * MiB))
    log = tmp_path / "nbdkit.log"
    # nbdkit's multi-conn filter switches the flag off: a server that does not promise it.
    server = nbdkit("-r", "--filter=log", "--filter=multi-conn", "file", str(src), f"logfile={log}",
                    "multi-conn-mode=disable")
    res = nbdboot("deploy", "--connections", "4", server.uri, str(tmp_path / "t.img"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "t.img").read_bytes() == src.read_bytes()
    assert log.read_text().count("Connect ") == 2   # guest-side source + one copier


def test_interrupted_nbd_deploy_resumes_where_it_stopped(tmp_path, nbdkit):
    src = tmp_path / "src.img"
    src.write_bytes(random.Random(3).randbytes(48 * MiB))
    server = nbdkit("-r", "file", str(src))
    target = str(tmp_path / "t.img")
    first = copy_to_target(server.uri, target, connections=1, stop_after=8 * MiB)
    assert 8 * MiB <= first.stats.copied_bytes < 48 * MiB
    res = nbdboot("deploy", server.uri, target)
    assert res.returncode == 0, res.stderr
    second = copied_bytes(res.stderr)
    assert first.stats.copied_bytes + second == 48 * MiB   # nothing copied twice
    assert (tmp_path / "t.img").read_bytes() == src.read_bytes()


def test_restore_since_bitmap_copies_only_dirty_blocks(tmp_path):
    require_tool("qemu-nbd")
    qcow = tmp_path / "backup.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow), "64M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 8M", "-c", "write -P 0x22 32M 4M",
                    str(qcow)], check=True, capture_output=True)
    machine = tmp_path / "disk.raw"     # the machine's disk as of the last backup
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow), str(machine)], check=True)
    subprocess.run(["qemu-img", "bitmap", "--add", "--enable", str(qcow), "bitmap0"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x33 1M 100k", "-c", "write -P 0x44 40M 1M",
                    "-c", "write -z 33M 512k", str(qcow)], check=True, capture_output=True)
    wanted = tmp_path / "wanted.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow), str(wanted)], check=True)
    sock = tmp_path / "q.sock"
    proc = subprocess.Popen(["qemu-nbd", "-t", "-e", "8", "-r", "-f", "qcow2", "-B", "bitmap0",
                             "-k", str(sock), str(qcow)], stderr=subprocess.PIPE)
    try:
        wait_for_path(str(sock), proc)
        uri = f"nbd+unix:///?socket={sock}"
        res = nbdboot("restore", "--since-bitmap", "bitmap0", uri, str(machine))
        assert res.returncode == 0, res.stderr
        # dirty: 1M+100k (two 64 KiB blocks), 33M+512k, 40M+1M; the zeroed range counts as data
        # in a dirty bitmap, and our copier asks block status about it: holes/zeroes skip.
        dirty_total = 128 * 1024 + 512 * 1024 + MiB
        assert copied_bytes(res.stderr) + _skipped_zero(res.stderr) == dirty_total
        assert copied_bytes(res.stderr) < dirty_total + 1
        assert machine.read_bytes() == wanted.read_bytes()
        bad = nbdboot("restore", "--since-bitmap", "nope", uri, str(tmp_path / "other.raw"))
        assert bad.returncode == 3 and "qemu:dirty-bitmap:nope" in bad.stderr
        assert "Traceback" not in bad.stderr
        assert not (tmp_path / "other.raw").exists()
    finally:
        proc.terminate()
        proc.wait(10)


def _skipped_zero(stderr: str) -> int:
    m = re.search(r"skipped ([\d.]+) (B|KiB|MiB|GiB) as holes", stderr)
    assert m, stderr
    return int(float(m.group(1)) * {"B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1 << 30}[m.group(2)])


def test_bad_inputs_give_one_line_and_exit_code(tmp_path, nbdkit):
    src = tmp_path / "src.img"
    src.write_bytes(bytes(MiB))
    server = nbdkit("-r", "file", str(src))
    res = nbdboot("deploy", server.uri, server.uri)
    assert res.returncode == 2 and "--map" in res.stderr
    res = nbdboot("deploy", f"nbd://127.0.0.1:{_dead_port()}", str(tmp_path / "x.img"))
    assert res.returncode == 3 and "Traceback" not in res.stderr
    assert not (tmp_path / "x.img").exists()
    # a map made for another disk
    (tmp_path / "big.img").write_bytes(bytes(2 * MiB))
    assert nbdboot("deploy", str(tmp_path / "big.img"), str(tmp_path / "t.img")).returncode == 0
    res = nbdboot("deploy", "--map", str(tmp_path / "t.img.nbdboot-map"), server.uri, str(tmp_path / "t2.img"))
    assert res.returncode == 2 and "made for a 2097152-byte disk" in res.stderr
    assert not (tmp_path / "t2.img").exists()
    (tmp_path / "junk").write_bytes(b"hello" * 2000)
    res = nbdboot("deploy", "--map", str(tmp_path / "junk"), server.uri, str(tmp_path / "t3.img"))
    assert res.returncode == 2 and "not an nbdboot map" in res.stderr
    res = nbdboot("deploy", "--connections", "0", server.uri, str(tmp_path / "t4.img"))
    assert res.returncode == 2
    # same size, other contents: the map of a finished deploy must not make a copy a no-op
    (tmp_path / "a.img").write_bytes(b"\xaa" * MiB)
    (tmp_path / "b.img").write_bytes(b"\xbb" * MiB)
    assert nbdboot("deploy", str(tmp_path / "a.img"), str(tmp_path / "ab.img")).returncode == 0
    res = nbdboot("deploy", str(tmp_path / "b.img"), str(tmp_path / "ab.img"))
    assert res.returncode == 2 and "different source" in res.stderr and "--restart" in res.stderr
    assert nbdboot("deploy", "--restart", str(tmp_path / "b.img"), str(tmp_path / "ab.img")).returncode == 0
    assert (tmp_path / "ab.img").read_bytes() == b"\xbb" * MiB


def _dead_port() -> int:
    from support.servers import free_port
    return free_port()


def test_live_deploy_over_nbd_with_guest_io_then_target_alone(tmp_path, nbdkit):
    from nbdboot.disk.nbd import NbdDevice
    from nbdboot.disk.open import open_guest_disk

    src = tmp_path / "src.img"
    rnd = random.Random(8)
    with open(src, "wb") as f:
        f.truncate(64 * MiB)
        for k in range(0, 64 * MiB, 3 * MiB):
            f.seek(k)
            f.write(rnd.randbytes(MiB))
    model = bytearray(src.read_bytes())
    server = nbdkit("-r", "file", str(src))
    target = tmp_path / "disk.raw"
    disk = open_guest_disk(lambda: NbdDevice(server.uri, read_only=True), deploy_to=str(target),
                           sync="periodic", source_spec=server.uri)
    try:
        copier = disk.copier
        for _ in range(300):   # the guest works while the copier runs
            off = rnd.randrange(0, 64 * MiB - 70000)
            n = rnd.choice([512, 4096, 70000])
            if rnd.random() < 0.5:
                data = rnd.randbytes(n)
                disk.pwrite(data, off)
                model[off:off + n] = data
            else:
                assert disk.pread(n, off) == bytes(model[off:off + n])
        assert copier.wait(60) and copier.error is None and copier.done
        assert disk.pread(64 * MiB, 0) == bytes(model)
        assert disk._source_closed          # served from TARGET alone now
    finally:
        disk.close()
    assert src.read_bytes() != bytes(model) and target.read_bytes() == bytes(model)


def test_deploy_to_an_nbd_target(tmp_path, nbdkit):
    src = tmp_path / "src.img"
    rnd = random.Random(12)
    with open(src, "wb") as f:
        f.truncate(32 * MiB)
        for k in range(0, 32 * MiB, 4 * MiB):
            f.seek(k)
            f.write(rnd.randbytes(MiB))
    dst = tmp_path / "dst.img"
    dst.write_bytes(b"\xee" * (32 * MiB))     # old contents: the holes must be zeroed, not skipped
    source = nbdkit("-r", "file", str(src))
    target = nbdkit("file", str(dst))
    res = nbdboot("deploy", "--map", str(tmp_path / "dst.map"), source.uri, target.uri)
    assert res.returncode == 0, res.stderr
    assert copied_bytes(res.stderr) == 8 * MiB
    assert dst.read_bytes() == src.read_bytes()


def test_deploy_to_a_block_device(tmp_path):
    """A loop device as TARGET: old contents are overwritten, holes become zeroes."""
    import pytest
    if os.geteuid() != 0:
        pytest.skip("needs root for a loop device")
    backing = tmp_path / "backing.img"
    backing.write_bytes(b"\xee" * (40 * MiB))
    res = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"no loop device: {res.stderr.strip()}")
    dev = res.stdout.strip()
    try:
        src = tmp_path / "src.img"
        with open(src, "wb") as f:
            f.truncate(32 * MiB)
            f.seek(8 * MiB)
            f.write(random.Random(6).randbytes(4 * MiB))
        out = nbdboot("deploy", "--map", str(tmp_path / "dev.map"), str(src), dev)
        assert out.returncode == 0, out.stderr
        assert copied_bytes(out.stderr) == 4 * MiB
        with open(dev, "rb") as f:
            assert f.read(32 * MiB) == src.read_bytes()
            assert f.read(MiB) == b"\xee" * MiB     # past the source's end: untouched
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_ctrl_c_stops_deploy_resumably(tmp_path, nbdkit):
    """SIGINT: exit 130, what was copied is in the map, the next run copies only the rest."""
    import signal
    import time
    server = nbdkit("-r", "--filter=delay", "pattern", "64M", "delay-read=100ms")
    target = tmp_path / "t.img"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "deploy", "--connections", "1",
                             server.uri, str(target)], stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1.5)   # a few 4 MiB pieces at 100 ms each
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    res = nbdboot("deploy", server.uri, str(target))
    assert res.returncode == 0, res.stderr
    already = _already_local(res.stderr)
    assert 0 < already < 64 * MiB
    assert copied_bytes(res.stderr) == 64 * MiB - already
    from array import array
    pattern = array("Q", range(0, 64 * MiB, 8))   # nbdkit pattern: each 8 bytes hold their offset, big-endian
    pattern.byteswap()
    assert target.read_bytes() == pattern.tobytes()


def _already_local(stderr: str) -> int:
    m = re.search(r"([\d.]+) (B|KiB|MiB|GiB) already local", stderr)
    assert m, stderr
    return int(float(m.group(1)) * {"B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1 << 30}[m.group(2)])


def test_a_copy_stopped_after_its_last_block_is_complete(tmp_path):
    """`run --deploy-to` stops the copier when the guest is done; if every block was copied
    by then, the copy is complete (the run reports it so), not 'interrupted'."""
    src = tmp_path / "src.img"
    src.write_bytes(random.Random(7).randbytes(2 * MiB))
    store = copy_to_target(str(src), str(tmp_path / "t.img"), stop_after=2 * MiB)
    assert store.copier.done
    assert (tmp_path / "t.img").read_bytes() == src.read_bytes()
    big = tmp_path / "big.img"
    big.write_bytes(random.Random(8).randbytes(16 * MiB))
    part = copy_to_target(str(big), str(tmp_path / "p.img"), stop_after=MiB, connections=1)
    assert 0 < part.stats.copied_bytes < 16 * MiB and not part.copier.done
