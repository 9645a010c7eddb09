"""Where the guest's screen goes: a text stream (headless) or a live terminal.

Headless: text the guest prints through the BIOS teletype (DOS's console,
boot loaders' messages) is streamed to stdout as it appears, and the final
80x25 screen is printed at exit. Terminal: the screen is redrawn in place a
few times a second and typed keys go to the guest.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty

from nbdboot.console.keys import terminal_keys
from nbdboot.console.screen import CP437, cursor, screen_lines


class HeadlessConsole:
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self._pending: list[str] = []
        self._at_line_start = True

    def attach(self, machine) -> None:
        machine.bios.video.on_output = self.teletype

    def teletype(self, ch: int) -> None:
        if ch == 0x0D or ch == 0x07:
            return
        if ch == 0x08:
            self._pending.append("\b")
            return
        self._pending.append("\n" if ch == 0x0A else CP437[ch])

    def update(self, machine) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self.stream.write(text)
            self.stream.flush()
            self._at_line_start = text.endswith("\n")

    def keys(self):
        return []

    def finish(self, machine) -> None:
        self.update(machine)
        if not self._at_line_start:
            self.stream.write("\n")
        self.stream.write("---- screen ----\n")
        self.stream.write("\n".join(screen_lines(machine.cpu)).rstrip("\n") + "\n")
        self.stream.write("----------------\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class TerminalConsole:
    """Live 80x25 view on an ANSI terminal; keys typed go to the guest (Ctrl-C quits)."""

    def __init__(self):
        self.fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        # Ctrl-C is read as a byte rather than taken as SIGINT: a shell's background
        # job (CI runners, `cmd &`) inherits SIGINT ignored, and the key must still quit.
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~termios.ISIG
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        self._last: list[str] | None = None
        sys.stdout.write("\x1b[?1049h\x1b[2J")
        sys.stdout.flush()

    def attach(self, machine) -> None:
        pass

    def update(self, machine) -> None:
        lines = screen_lines(machine.cpu)
        row, col = cursor(machine.cpu)
        if lines != self._last:
            out = ["\x1b[H"]
            for line in lines:
                out.append(line.ljust(80) + "\x1b[K\r\n")
            out.append(f"\x1b[{row + 1};{col + 1}H")
            sys.stdout.write("".join(out))
            sys.stdout.flush()
            self._last = lines

    def keys(self):
        if not select.select([self.fd], [], [], 0)[0]:
            return []
        data = os.read(self.fd, 256).decode("latin-1")
        if "\x03" in data:
            raise KeyboardInterrupt
        return terminal_keys(data)

    def finish(self, machine) -> None:
        self.close()
        sys.stdout.write("\n".join(screen_lines(machine.cpu)).rstrip("\n") + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None
            sys.stdout.write("\x1b[?1049l")
            sys.stdout.flush()
