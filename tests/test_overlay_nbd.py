"""Overlays over a read-only NBD export: writes stay local, reuse, info, commit, discard."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from nbdboot.disk.blockmap import BlockMapError
from nbdboot.disk.nbd import NbdDevice
from nbdboot.disk.overlay import open_overlay, overlay_info
from nbdboot.disk.open import open_guest_disk

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def nbdboot(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "nbdboot", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def make_image(path: Path, size=16 * MiB) -> bytes:
    rnd = random.Random(11)
    with open(path, "wb") as f:
        f.truncate(size)
        for k in range(0, size, 2 * MiB):
            f.seek(k)
            f.write(rnd.randbytes(MiB))
    return path.read_bytes()


def guest_session(uri: str, overlay: Path, model: bytearray, seed: int) -> None:
    """Random guest writes and zeroes through an overlay, each checked against the model."""
    rnd = random.Random(seed)
    disk = open_guest_disk(lambda: NbdDevice(uri, read_only=True), overlay=str(overlay), source_spec=uri)
    try:
        assert disk.pread(len(model), 0) == bytes(model)   # earlier sessions' writes are there
        for _ in range(60):
            off = rnd.randrange(0, len(model) - 300000)
            n = rnd.choice([512, 4096, 65536, 300000])
            if rnd.random() < 0.2:
                disk.zero(off, n)
                model[off:off + n] = bytes(n)
            else:
                data = rnd.randbytes(n)
                disk.pwrite(data, off)
                model[off:off + n] = data
        disk.flush()
        assert disk.pread(len(model), 0) == bytes(model)
    finally:
        disk.close()


def test_overlay_keeps_writes_local_and_reuses_them(tmp_path, nbdkit):
    img = tmp_path / "export.img"
    pristine = make_image(img)
    server = nbdkit("-r", "file", str(img))     # read-only: a write to it would fail loudly
    overlay = tmp_path / "machine.ovl"
    model = bytearray(pristine)
    guest_session(server.uri, overlay, model, 1)
    guest_session(server.uri, overlay, model, 2)   # same overlay, next run: state carries over
    assert img.read_bytes() == pristine
    info = overlay_info(str(overlay))
    assert 0 < info.guest_blocks < info.size // info.block_size
    # sparse: the guest's blocks plus header, map and journal, not the whole disk
    assert overlay.stat().st_blocks * 512 <= info.guest_blocks * info.block_size + 2 * MiB

    info = nbdboot("overlay", "info", str(overlay))
    assert info.returncode == 0, info.stderr
    assert "guest blocks:" in info.stdout and server.uri in info.stdout


def test_overlay_commit_pushes_guest_blocks_then_discard(tmp_path, nbdkit):
    img = tmp_path / "export.img"
    pristine = make_image(img)
    ro = nbdkit("-r", "file", str(img))
    overlay = tmp_path / "machine.ovl"
    model = bytearray(pristine)
    guest_session(ro.uri, overlay, model, 3)

    res = nbdboot("overlay", "commit", str(overlay), "--to", ro.uri)
    assert res.returncode != 0 and "read-only" in res.stderr and "Traceback" not in res.stderr

    rw = nbdkit("file", str(img))
    res = nbdboot("overlay", "commit", "--keep", str(overlay), "--to", rw.uri)
    assert res.returncode == 0, res.stderr
    assert img.read_bytes() == bytes(model)     # the export now holds the guest's disk

    # Discard throws the guest's blocks away: the overlay reads as the export again.
    img.write_bytes(pristine)
    res = nbdboot("overlay", "discard", str(overlay))
    assert res.returncode == 0, res.stderr
    disk = open_guest_disk(lambda: NbdDevice(ro.uri, read_only=True), overlay=str(overlay))
    try:
        assert disk.pread(len(pristine), 0) == pristine
        assert disk.map.count(3) == 0 and disk.map.count(4) == 0
    finally:
        disk.close()


def test_commit_empties_overlay_by_default(tmp_path, nbdkit):
    img = tmp_path / "export.img"
    pristine = make_image(img, 4 * MiB)
    rw = nbdkit("file", str(img))
    overlay = tmp_path / "m.ovl"
    model = bytearray(pristine)
    guest_session(rw.uri, overlay, model, 5)
    assert img.read_bytes() == pristine   # writable export, but the overlay kept the writes
    res = nbdboot("overlay", "commit", str(overlay))    # --to defaults to the recorded source
    assert res.returncode == 0, res.stderr
    assert img.read_bytes() == bytes(model)
    info = nbdboot("overlay", "info", str(overlay))
    assert "0 written, 0 zeroed" in info.stdout
    # The emptied overlay belongs to the committed export now...
    guest_session(rw.uri, overlay, model, 6)
    # ...and is refused on other contents of the same size.
    other = tmp_path / "other.img"
    other.write_bytes(b"\x01" * len(pristine))
    s_other = nbdkit("-r", "file", str(other))
    try:
        open_guest_disk(lambda: NbdDevice(s_other.uri, read_only=True), overlay=str(overlay)).close()
    except BlockMapError as e:
        assert "made from a different source" in str(e)
    else:
        raise AssertionError("an overlay opened on another export")


def test_overlay_bad_files(tmp_path, nbdkit):
    junk = tmp_path / "junk"
    junk.write_bytes(b"x" * 10000)
    for action in ("info", "commit", "discard"):
        res = nbdboot("overlay", action, str(junk), "--to", "nbd://127.0.0.1:1")
        assert res.returncode == 2 and "not an nbdboot map" in res.stderr, res.stderr
    res = nbdboot("overlay", "info", str(tmp_path / "missing"))
    assert res.returncode == 6 and "Traceback" not in res.stderr
    # An overlay made for a 16 MiB disk does not fit a 4 MiB export.
    big = tmp_path / "big.img"
    make_image(big)
    small = tmp_path / "small.img"
    make_image(small, 4 * MiB)
    s_big = nbdkit("-r", "file", str(big))
    s_small = nbdkit("file", str(small))
    ovl = tmp_path / "o.ovl"
    open_guest_disk(lambda: NbdDevice(s_big.uri, read_only=True), overlay=str(ovl)).close()
    res = nbdboot("overlay", "commit", str(ovl), "--to", s_small.uri)
    assert res.returncode == 2 and "16777216-byte disk" in res.stderr


def test_periodic_sync_reaches_the_disk_while_the_guest_is_quiet(tmp_path, nbdkit, monkeypatch):
    """--sync periodic: a write followed by silence is fdatasync'd within the interval, not only
    at the guest's next write or at close (the window a power loss can take is bounded)."""
    import time
    make_image(tmp_path / "base.img", 4 * MiB)
    server = nbdkit("-r", "file", str(tmp_path / "base.img"))
    synced: list[int] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd):
        synced.append(fd)
        real_fdatasync(fd)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    disk = open_guest_disk(lambda: NbdDevice(server.uri), overlay=str(tmp_path / "m.overlay"), sync="periodic")
    try:
        disk.sync_interval = 1.0
        time.sleep(1.1)                     # nothing written: the timer has nothing to do
        assert synced == []
        disk.pwrite(b"x" * 4096, 0)        # the first write after a quiet interval syncs at once
        before = len(synced)
        disk.pwrite(b"x" * 4096, 65536)
        assert len(synced) == before        # acknowledged without a sync: the last one is recent
        deadline = time.monotonic() + 5
        while len(synced) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(synced) > before, "no sync within the interval after the guest went quiet"
        count = len(synced)          # the timer syncs the data, then the map: let its pass finish
        while time.monotonic() < deadline:
            time.sleep(0.3)
            if len(synced) == count:
                break
            count = len(synced)
        time.sleep(1.5)
        assert len(synced) == count         # and none again until the guest writes
    finally:
        disk.close()
    with NbdDevice(server.uri) as base:
        assert base.pread(4096, 65536) != b"x" * 4096


@pytest.mark.parametrize("store", ["overlay", "deploy_to"])
def test_a_4k_guest_write_needs_nothing_from_the_source(tmp_path, nbdkit, store):
    """Blocks are 4 KiB: an aligned 4 KiB write is a whole block, so no round trip to fetch
    the rest of it; a 512-byte write fetches only its 4 KiB block."""
    src = tmp_path / "src.img"
    image = make_image(src)
    server = nbdkit("-r", "file", str(src))
    local = tmp_path / "local.img"
    disk = open_guest_disk(lambda: NbdDevice(server.uri, read_only=True), **{store: str(local)},
                           source_spec=server.uri, start_copier=False)
    try:
        assert disk.map.block_size == 4096
        disk.pwrite(b"\x11" * 4096, 8 * 4096)
        assert disk.stats.fill_bytes == 0
        disk.pwrite(b"\x22" * 512, 20 * 4096 + 1024)
        assert disk.stats.fill_bytes == 4096
        got = disk.pread(3 * 4096, 19 * 4096)
    finally:
        disk.close()
    want = bytearray(image[19 * 4096:22 * 4096])
    want[4096 + 1024:4096 + 1536] = b"\x22" * 512
    assert got == bytes(want)


def test_a_reused_overlay_keeps_its_block_size(tmp_path, nbdkit):
    src = tmp_path / "src.img"
    make_image(src)
    server = nbdkit("-r", "file", str(src))
    old = tmp_path / "old.img"
    open_overlay(NbdDevice(server.uri, read_only=True), str(old), source_spec=server.uri,
                 block_size=65536).close()
    disk = open_guest_disk(lambda: NbdDevice(server.uri, read_only=True), overlay=str(old),
                           source_spec=server.uri)
    try:
        disk.pwrite(b"\x33" * 4096, 8 * 4096)
        assert disk.stats.fill_bytes == 65536
    finally:
        disk.close()
    assert overlay_info(str(old)).block_size == 65536


def test_commit_after_a_crash_finishes_the_journalled_write_first(tmp_path, nbdkit):
    """A run killed during an overwrite leaves the write whole in the journal and maybe torn in
    the data area; commit replays it before pushing blocks, so the export gets the write."""
    img = tmp_path / "export.img"
    pristine = make_image(img)
    ro = nbdkit("-r", "file", str(img))
    overlay = tmp_path / "machine.ovl"
    disk = open_guest_disk(lambda: NbdDevice(ro.uri, read_only=True), overlay=str(overlay), source_spec=ro.uri)
    disk.pwrite(b"\xaa" * 4096, 2 * 4096)
    disk.pwrite(b"\xbb" * 4096, 2 * 4096)    # an overwrite: journalled
    data_offset = disk.map.data_offset
    os.close(disk.map.fd)                    # killed: no close, the journal stays
    disk.target.close()
    disk.source.close()
    with open(overlay, "r+b") as f:          # the overwrite torn: half of it never reached the disk
        f.seek(data_offset + 2 * 4096 + 2048)
        f.write(b"\xaa" * 2048)

    rw = nbdkit("file", str(img))
    res = nbdboot("overlay", "commit", "--keep", str(overlay), "--to", rw.uri)
    assert res.returncode == 0, res.stderr
    want = bytearray(pristine)
    want[2 * 4096:3 * 4096] = b"\xbb" * 4096
    assert img.read_bytes() == bytes(want)
