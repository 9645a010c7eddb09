"""`nbdboot run` on a terminal while the network misbehaves: Ctrl-A x and SIGTERM still end it at once with the
terminal restored, and NBD news goes to a status line, not into the guest's screen."""

from __future__ import annotations

import os
import signal
import time

import pytest

from support.badnbd import BadServer
from support.terminal import read_until, run_on_terminal

RESTORE = b"\x1b[?1049l"


def finish(pid, fd, out: bytes, timeout: float = 10) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        out = read_until(fd, b"\0never", 0.1, out)
        if done:
            out = read_until(fd, b"\0never", 0.2, out)
            os.close(fd)
            return os.waitstatus_to_exitcode(status), out
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(fd)
    raise AssertionError(f"still running after {timeout} s: {out[-300:]!r}")


@pytest.mark.parametrize("how, code, text", [("ctrl-a x", 130, b"nbdboot: interrupted"),
                                             ("sigterm", 143, b"nbdboot: terminated by SIGTERM")])
def test_ctrl_c_and_sigterm_end_a_run_whose_guest_waits_on_a_silent_server(how, code, text):
    # Before: the quit key was read between slices only, and the guest sat in int 13h for 30 s per try, ten tries;
    # SIGTERM killed the process with the terminal left raw and on the alternate screen.
    with BadServer("stall-after-boot") as srv:
        pid, fd = run_on_terminal(srv.uri, "--media", "hdd", "--timeout", "120")
        out = read_until(fd, b"*", 20)            # the boot sector runs; its next read never gets an answer
        assert b"*" in out
        time.sleep(1.0)
        t0 = time.monotonic()
        if how == "ctrl-a x":                      # the terminal's quit (Ctrl-C is the guest's key)
            os.write(fd, b"\x01x")
        else:
            os.kill(pid, signal.SIGTERM)
        status, out = finish(pid, fd, out)
        took = time.monotonic() - t0
    assert status == code, out[-300:]
    assert took < 1.0, took
    assert RESTORE in out and out.index(RESTORE) < out.index(text)


def test_timeout_ends_a_live_run_whose_guest_waits_on_a_silent_server():
    with BadServer("stall-after-boot") as srv:
        t0 = time.monotonic()
        pid, fd = run_on_terminal(srv.uri, "--media", "hdd", "--timeout", "3")
        status, out = finish(pid, fd, b"", timeout=15)
    assert status == 3
    assert time.monotonic() - t0 < 6
    assert out.rstrip().endswith(b"nbdboot: error: --timeout 3 s reached while waiting for the NBD server")
    assert out.index(RESTORE) < out.index(b"--timeout 3 s reached")


@pytest.mark.parametrize("rows", [30, 25])
def test_nbd_news_goes_to_a_status_line_not_into_the_guest_screen(rows):
    with BadServer("drop-after-boot") as srv:
        pid, fd = run_on_terminal(srv.uri, "--media", "hdd", "--timeout", "4", "--retries", "2",
                                  "--retry-delay", "0.3", rows=rows)
        status, out = finish(pid, fd, b"", timeout=20)
    assert status == 3, out[-500:]
    live, _, after = out.partition(RESTORE)
    status_line = b"\x1b7\x1b[26;1H\x1b[7mnbdboot: " if rows > 25 else b"\x1b]2;nbdboot: "
    assert status_line + b"reconnecting (try 1/2)" in live
    assert status_line + b"int13: drive 0x80 read of 1 sectors at LBA 126 failed: gave up" in live
    # every NBD message on the live screen is inside the status line (or title) sequence
    for at in range(len(live)):
        if live.startswith(b"nbdboot: ", at):
            assert live[:at].endswith(status_line[:-len(b"nbdboot: ")]), live[at - 40:at + 60]
    # and the last one is said again on stderr once the screen is gone
    assert b"nbdboot: int13: drive 0x80 read of 1 sectors at LBA 126 failed" in after
