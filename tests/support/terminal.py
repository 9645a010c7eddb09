"""`nbdboot run` on a pseudo-terminal of a given size, and reading what it draws there."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time


def run_on_terminal(*argv: str, cols: int = 80, rows: int = 25) -> tuple[int, int]:
    """`nbdboot run ARGV` in a child on a new pseudo-terminal of cols x rows: (pid, the terminal's fd)."""
    pid, fd = pty.fork()
    if pid == 0:  # child: never returns into the test
        try:
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execvp(sys.executable, [sys.executable, "-m", "nbdboot", "run", *argv])
        finally:
            os._exit(127)
    return pid, fd


def read_until(fd: int, needle: bytes, timeout: float, sofar: bytes = b"") -> bytes:
    """`sofar` and what the terminal printed after it, until `needle` is in it, the timeout passes or it closes."""
    deadline = time.monotonic() + timeout
    while needle not in sofar and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                sofar += os.read(fd, 65536)
            except OSError:
                break
    return sofar
