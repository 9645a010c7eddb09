"""Live restore through open_guest_disk: boot-time guest I/O while only dirty blocks are copied."""

from __future__ import annotations

import subprocess

from nbdboot.disk.nbd import NbdDevice
from nbdboot.disk.open import open_guest_disk
from support.servers import require_tool, wait_for_path

MiB = 1 << 20


def test_live_restore_since_bitmap_with_guest_io(tmp_path):
    require_tool("qemu-nbd")
    qcow = tmp_path / "backup.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow), "32M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 16M", str(qcow)],
                   check=True, capture_output=True)
    machine = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow), str(machine)], check=True)
    subprocess.run(["qemu-img", "bitmap", "--add", "--enable", str(qcow), "b0"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x55 4M 2M", str(qcow)],
                   check=True, capture_output=True)
    wanted = tmp_path / "wanted.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow), str(wanted)], check=True)
    sock = tmp_path / "q.sock"
    proc = subprocess.Popen(["qemu-nbd", "-t", "-e", "8", "-r", "-f", "qcow2", "-B", "b0",
                             "-k", str(sock), str(qcow)], stderr=subprocess.PIPE)
    try:
        wait_for_path(str(sock), proc)
        uri = f"nbd+unix:///?socket={sock}"
        disk = open_guest_disk(lambda: NbdDevice(uri, read_only=True), deploy_to=str(machine),
                               since_bitmap="b0", source_spec=uri, start_copier=False)
        try:
            # Before any copying the guest already sees the backup's new data...
            assert disk.pread(4096, 5 * MiB) == b"\x55" * 4096
            # ...and its own writes, which the copier must leave alone.
            disk.pwrite(b"\x99" * 1000, 4 * MiB + 100)
            disk.copier.start()
            assert disk.copier.wait(60) and disk.copier.error is None and disk.copier.done
            # Only the dirty 2 MiB (minus what the guest read or wrote) came over the network.
            assert disk.copier.stats.copied_bytes <= 2 * MiB
            assert disk.copier.stats.skipped_bytes == 30 * MiB
        finally:
            disk.close()
    finally:
        proc.terminate()
        proc.wait(10)
    expect = bytearray(wanted.read_bytes())
    expect[4 * MiB + 100:4 * MiB + 1100] = b"\x99" * 1000
    assert machine.read_bytes() == bytes(expect)
