"""The BIOS drive's read-ahead (nbdboot/disk/readahead.py) over real NBD servers: small reads come from
whole windows, the bytes are the disk's whatever the access pattern, writes are seen, and a sector the
server fails fails only the reads that ask for it."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from nbdboot.disk.base import DiskError
from nbdboot.disk.file import FileDevice
from nbdboot.disk.nbd import NbdDevice
from nbdboot.disk.readahead import WINDOW, ReadAhead
from support.servers import require_tool, running_nbdkit

SIZE = 1 << 20


def pattern(size: int) -> bytes:
    return b"".join(i.to_bytes(4, "little") for i in range(size // 4))


def test_sector_by_sector_reads_cost_one_request_per_window(tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(pattern(SIZE))
    with running_nbdkit("--filter=log", "file", str(image), f"logfile={tmp_path / 'log'}") as server:
        device = ReadAhead(NbdDevice(server.uri))
        try:
            data = b"".join(device.pread(512, lba * 512) for lba in range(3 * WINDOW // 512))
        finally:
            device.close()
    assert data == pattern(SIZE)[:3 * WINDOW]
    reads = [line for line in (tmp_path / "log").read_text().splitlines() if " Read " in line]
    assert len(reads) == 3 == device.fetched, reads


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, SIZE - 1), st.integers(1, 3 * WINDOW)), max_size=30))
def test_reads_and_writes_through_it_match_the_disk(tmp_path_factory, ops):
    """Any mix of reads and writes (across windows, at the disk's end, larger than a window) reads back what a
    plain file holding the same writes reads."""
    tmp = tmp_path_factory.mktemp("ra")
    expected = bytearray(pattern(SIZE))
    (tmp / "disk.img").write_bytes(expected)
    device = ReadAhead(FileDevice(str(tmp / "disk.img")), window=4096, windows=8)
    try:
        for n, (write, offset, length) in enumerate(ops):
            length = min(length, SIZE - offset)
            if write:
                data = bytes([n & 0xFF]) * length
                device.pwrite(data, offset)
                expected[offset:offset + length] = data
            else:
                assert device.pread(length, offset) == bytes(expected[offset:offset + length])
        assert device.pread(SIZE, 0) == bytes(expected)
        with open(tmp / "disk.img", "rb") as f:
            assert f.read() == bytes(expected)  # every write reached the disk
    finally:
        device.close()


BAD_SECTOR = 37


def test_a_bad_sector_fails_only_the_reads_that_ask_for_it(tmp_path):
    """nbdkit's eval plugin fails any read that covers sector 37 with EIO: the window around it fails, and the
    sectors beside it still read, on their own."""
    require_tool("nbdkit")
    image = tmp_path / "disk.img"
    image.write_bytes(pattern(SIZE))
    bad = BAD_SECTOR * 512
    script = (f'if [ $4 -le {bad} ] && [ $(($4 + $3)) -gt {bad} ]; then echo "EIO bad sector" >&2; exit 1; fi; '
              f'dd if={image} skip=$4 count=$3 iflag=skip_bytes,count_bytes status=none')
    with running_nbdkit("eval", f"get_size=echo {SIZE}", f"pread={script}") as server:
        device = ReadAhead(NbdDevice(server.uri))
        try:
            assert device.pread(512, (BAD_SECTOR - 1) * 512) == pattern(SIZE)[bad - 512:bad]
            assert device.pread(512, (BAD_SECTOR + 1) * 512) == pattern(SIZE)[bad + 512:bad + 1024]
            try:
                device.pread(512, bad)
            except DiskError:
                pass
            else:
                raise AssertionError("the bad sector read without an error")
            assert device.pread(512, WINDOW) == pattern(SIZE)[WINDOW:WINDOW + 512]  # the next window is cached
        finally:
            device.close()


def test_freedos_boots_through_it_with_a_few_dozen_requests(tmp_path, freedos_img):
    """FreeDOS reads its kernel and shell a sector at a time: through the drive's read-ahead the whole boot to
    its prompt is a few dozen NBD reads, not one per sector."""
    log = tmp_path / "log"
    with running_nbdkit("--filter=log", "--filter=cow", "file", str(freedos_img), f"logfile={log}") as server:
        run = subprocess.run([sys.executable, "-m", "nbdboot", "run", "--server", server.uri, "--drive", "0x00",
                              "--expect", "A:\\>", "--timeout", "60", "--headless"],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    reads = [line for line in log.read_text().splitlines() if " Read " in line]
    assert 1 <= len(reads) <= 40, len(reads)
