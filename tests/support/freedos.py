"""The shared FreeDOS floppy booted by `nbdboot run` in a child process, its console read as it streams."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

PROMPT = "A:\\>"
KERNEL_BANNER = "FreeDOS kernel"


def read_until(proc: subprocess.Popen, text: str, timeout: float) -> str:
    """The guest's streamed output (headless console) up to and including `text`."""
    out = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while text.encode() not in out:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"{text!r} not printed within {timeout}s: {out[-500:]!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"nbdboot exited before printing {text!r}: {out[-500:]!r}")
        out += chunk
    return out.decode(errors="replace")


def boot_freedos(hostport: str, timeout: float, *extra: str) -> subprocess.Popen:
    """`nbdboot run` of the FreeDOS floppy from `hostport`, headless, streaming its console."""
    return subprocess.Popen([sys.executable, "-m", "nbdboot", "run", "--server", hostport, "--drive", "0x00",
                             "--expect", PROMPT, "--timeout", str(timeout), "--headless", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
