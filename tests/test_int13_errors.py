"""The NBD error path as the guest sees it: a server restart is ridden out within the client's reconnect budget,
a guest's reset reopens the connection after the budget is spent, a read-only export is write-protected.

A lost server that never comes back (the guest hears 04h, the run ends with exit 3) is
tests/test_run_cli.py::test_server_lost_mid_boot_exits_3; a server failing single requests (EIO, EPERM -> 04h) is
the conformance suite (cases 3.16-3.18, 6.17, 6.18 in tests/test_int13_conformance.py).
"""

from __future__ import annotations

import hashlib
import time

import pytest

from support import qemuref
from support.conformance import run_program
from support.freedos import KERNEL_BANNER, PROMPT, boot_freedos, read_until
from support.images import image


@pytest.mark.parametrize("stop", ["terminate", "kill"])  # SIGTERM: nbdkit fails in-flight reads with ESHUTDOWN
def test_server_restart_mid_boot_is_ridden_out(stop, nbdkit, freedos_img, tmp_path):
    # The 30 ms read delay stretches the boot; the kernel banner comes before most of its reads (the kernel's
    # own and the shell's).
    def serve(log, port=None):
        return nbdkit("--filter=log", "--filter=delay", "--filter=cow", "file", str(freedos_img), "rdelay=30ms",
                      f"logfile={log}", port=port)

    first = serve(tmp_path / "first.log")
    proc = boot_freedos(first.hostport, 60)
    try:
        read_until(proc, KERNEL_BANNER, 30)
        getattr(first.proc, stop)()
        first.proc.wait(5)
        time.sleep(1.5)
        second = serve(tmp_path / "second.log", port=first.port)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode(errors="replace")
    assert proc.returncode == 0, err + out.decode(errors="replace")[-2000:]
    assert err == ""                                  # no disk error reached the guest, nothing was logged
    assert PROMPT in out.decode(errors="replace")
    assert second.proc.poll() is None
    second_log = (tmp_path / "second.log").read_text()
    assert "Connect " in second_log and "Read " in second_log  # the rest of the boot came from the new server


def test_guest_reset_reopens_after_the_budget_is_spent(nbdkit, freedos_img):
    # The server dies while FreeDOS's boot sector loads the kernel, and stays away longer than a one-try budget.
    # The boot sector hears 04h and loops on reset + read; each reset reopens (iPXE's sandev_reset), so once the
    # server is back the boot goes on. The failure is logged once, not once per guest retry.
    # 2 s a read: the kill lands while the boot sector's read of the kernel (one 32 KiB read-ahead) is in flight.
    first = nbdkit("--filter=delay", "--filter=cow", "file", str(freedos_img), "rdelay=2")
    proc = boot_freedos(first.hostport, 30, "--retries", "1", "--retry-delay", "0")
    try:
        assert KERNEL_BANNER not in read_until(proc, "FreeDOS", 30)
        first.proc.kill()
        first.proc.wait(5)
        time.sleep(2)
        nbdkit("--filter=delay", "--filter=cow", "file", str(freedos_img), "rdelay=30ms", port=first.port)
        out, err = (stream.decode(errors="replace") for stream in proc.communicate(timeout=60))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err + out[-2000:]
    assert KERNEL_BANNER in out and PROMPT in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbdboot: int13: drive 0x00 read of "), err
    assert "gave up after 1 reconnect attempts" in lines[0]


def test_read_only_export_answers_write_protected(nbdkit):
    # The conformance program writes with AH=03h (3.13 to LBA 126, 3.18 to LBA 800) and AH=43h (6.13 to LBA 500,
    # 6.18 to LBA 801) and reads 126 and 500 back (3.14, 6.14). From `nbdkit -r` every write is 03h with CF set,
    # nothing claimed transferred, and the disk keeps its old sectors.
    img = image("conformance")
    before = hashlib.sha256(img.read_bytes()).hexdigest()
    server = nbdkit("-r", "file", str(img))
    results, _ = run_program(server.uri, 0x80, b"END conformance")
    data = img.read_bytes()
    for case in ("3.13", "3.18"):
        assert (results[case]["CF"], results[case]["AH"], results[case]["AL"]) == (1, 0x03, 0), case
    for case in ("6.13", "6.18"):
        assert (results[case]["CF"], results[case]["AH"], results[case]["COUNT"]) == (1, 0x03, 0), case
    assert results["3.14"]["SUM"] == qemuref.checksum(data[126 * 512:127 * 512])
    assert results["6.14"]["SUM"] == qemuref.checksum(data[500 * 512:501 * 512])
    assert results["3.14"]["SUM"] != qemuref.checksum(data[:512])      # not what the guest tried to write
    assert hashlib.sha256(data).hexdigest() == before
