"""`nbdboot run` on a terminal: the screen is drawn live, typed keys (Ctrl-C too) reach the guest, Ctrl-A x
ends it, a status line says so, a terminal smaller than 80x25 is told it is."""

from __future__ import annotations

import os
import pty
import re
import shutil
import time

from support.terminal import read_until, run_on_terminal


def finish(pid, fd) -> int:
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status)


def rows_drawn(out: bytes) -> list[bytes]:
    return [row.strip() for row in re.split(rb"\x1b\[K", out)]


def test_live_terminal_keys_ctrl_c_to_the_guest_and_ctrl_a_x(freedos_img, tmp_path):
    image = tmp_path / "freedos.img"
    shutil.copyfile(freedos_img, image)
    pid, fd = run_on_terminal("--image", str(image), "--timeout", "60", rows=26)
    try:
        out = read_until(fd, b"A:\\>", 30)
        assert b"\x1b[H" in out                      # drawn in place, not streamed
        assert b"Ctrl-A x quits" in out               # the status line on row 26
        os.write(fd, b"ver\r")
        out = read_until(fd, b"FreeCom version 0.82 pl 3 XMS_Swap", 30, out[out.index(b"A:\\>"):])
        assert b"ver" in out and b"FreeCom version" in out
        os.write(fd, b"dir")
        out = read_until(fd, b"A:\\>dir", 10, b"")
        assert b"A:\\>dir" in out
        os.write(fd, b"\x03")                          # Ctrl-C: the shell drops the line
        time.sleep(1)
        os.write(fd, b"ver\r")                         # so this is `ver`, not `dirver`
        out = read_until(fd, b"never", 4, b"")
        drawn = rows_drawn(out[out.rindex(b"\x1b[H"):])    # the last frame
        assert drawn.count(b"FreeCom version 0.82 pl 3 XMS_Swap [Dec 10 2003 06:49:21]") == 3, drawn
        assert b"Bad command" not in out and b"bytes free" not in out
        os.write(fd, b"\x01x")                         # Ctrl-A x
        read_until(fd, b"interrupted", 10)
    finally:
        code = finish(pid, fd)
    assert code == 130


def test_small_terminal_is_told(freedos_img, tmp_path):
    image = tmp_path / "freedos.img"
    shutil.copyfile(freedos_img, image)
    pid, fd = run_on_terminal("--image", str(image), "--timeout", "60", cols=60, rows=20)
    try:
        out = read_until(fd, b"enlarge it", 30)
        assert b"terminal 60x20 < guest 80x25: enlarge it; Ctrl-A x quits" in out
        out = read_until(fd, b"FreeDOS", 30, out)
        assert all(len(row) <= 60 for row in rows_drawn(out.replace(b"\x1b[7m", b"").replace(b"\x1b[0m", b""))
                   if not row.startswith(b"\x1b"))
        os.write(fd, b"\x01\x18")                       # Ctrl-A Ctrl-X quits too
        read_until(fd, b"interrupted", 10)
    finally:
        code = finish(pid, fd)
    assert code == 130


def test_ctrl_a_b_sends_ctrl_break_and_other_keys_keep_their_order(monkeypatch):
    # QEMU's console sends a break with Ctrl-A b; the PC's break is Ctrl-Break (BIOS word 0000h).
    import io

    from nbdboot.console.keys import NAMED_KEYS, terminal_keys
    from nbdboot.console.output import TerminalConsole
    master, slave = pty.openpty()
    try:
        monkeypatch.setattr("sys.stdin", os.fdopen(slave, "r", closefd=False))
        console = TerminalConsole(out=io.StringIO())
        os.write(master, b"ab\x01bc\x01\x02")
        time.sleep(0.1)
        keys = console.keys()
        console.close()
    finally:
        os.close(master)
        os.close(slave)
    brk = ("key", NAMED_KEYS["ctrl-break"])
    assert keys == terminal_keys("ab") + [brk] + terminal_keys("c") + [brk]
