"""`nbdboot run` on a terminal: the screen is drawn live, typed keys reach the guest, Ctrl-C ends it."""

from __future__ import annotations

import os
import pty
import select
import shutil
import sys
import time


def read_until(fd, needle: bytes, timeout: float, sofar: bytes = b"") -> bytes:
    deadline = time.monotonic() + timeout
    while needle not in sofar and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                sofar += os.read(fd, 65536)
            except OSError:
                break
    return sofar


def test_live_terminal_keys_and_ctrl_c(freedos_img, tmp_path):
    image = tmp_path / "freedos.img"
    shutil.copyfile(freedos_img, image)
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on a pseudo-terminal
        os.execvp(sys.executable, [sys.executable, "-m", "nbdboot", "run", "--image", str(image),
                                   "--drive", "0x00", "--timeout", "60"])
    try:
        out = read_until(fd, b"A:\\>", 30)
        assert b"\x1b[H" in out                      # drawn in place, not streamed
        os.write(fd, b"ver\r")
        out = read_until(fd, b"FreeCom version 0.82 pl 3 XMS_Swap", 30, out[out.index(b"A:\\>"):])
        assert b"ver" in out and b"FreeCom version" in out
        os.write(fd, b"\x03")
        read_until(fd, b"interrupted", 10)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 130
