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

from nbdboot.console.keys import NAMED_KEYS, terminal_keys
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


# The escape prefix, as QEMU's -nographic console has it: every other key, Ctrl-C included, goes to the guest.
PREFIX = "\x01"                     # Ctrl-A
QUIT_KEYS = ("x", "X", "\x18")     # Ctrl-A x (or Ctrl-A Ctrl-X)
SEND_PREFIX_KEYS = ("a", "\x01")   # Ctrl-A a (or Ctrl-A Ctrl-A): a Ctrl-A for the guest
BREAK_KEYS = ("b", "\x02")         # Ctrl-A b (or Ctrl-A Ctrl-B): Ctrl-Break for the guest
STATUS = "nbdboot: Ctrl-A x quits, Ctrl-A a sends Ctrl-A, Ctrl-A b Ctrl-Break; other keys go to the guest"
GUEST_COLS, GUEST_ROWS = 80, 25


class TerminalConsole:
    """Live 80x25 view on an ANSI terminal; keys typed go to the guest, Ctrl-A x quits.

    A status line under the guest's screen (when the terminal has a 26th row) and the terminal's title say
    how to quit. A terminal smaller than 80x25 gets the part of the screen that fits and, on its last row,
    a message saying so: drawing 80 columns into fewer would wrap and scramble every row.
    """

    def __init__(self, out=None):
        self.fd = sys.stdin.fileno()
        self.out = out or sys.stdout
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        # Ctrl-C is read as a byte rather than taken as SIGINT: it is the guest's key, and a shell's
        # background job (CI runners, `cmd &`) inherits SIGINT ignored anyway.
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~termios.ISIG
        mode[0] &= ~termios.IXON          # Ctrl-S/Ctrl-Q reach the guest too
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        self._last: list[str] | None = None
        self._size: tuple[int, int] | None = None
        self._prefix = False              # Ctrl-A seen, its command key not yet
        self._status = STATUS             # row 26 (or the title on a 25-row terminal)
        self.out.write("\x1b[?1049h\x1b[2J\x1b]2;nbdboot (Ctrl-A x quits)\x07")
        self.out.flush()

    def attach(self, machine) -> None:
        pass

    def terminal_size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(self.out.fileno())
            return size.columns, size.lines
        except (OSError, ValueError):
            return GUEST_COLS, GUEST_ROWS + 1

    def update(self, machine) -> None:
        lines = screen_lines(machine.cpu)
        size = self.terminal_size()
        if lines == self._last and size == self._size:
            return
        if size != self._size:
            self.out.write("\x1b[2J")
        self._last, self._size = lines, size
        cols, rows = size
        small = cols < GUEST_COLS or rows < GUEST_ROWS
        shown = min(GUEST_ROWS, rows - 1 if small else GUEST_ROWS)
        out = ["\x1b[H"]
        for line in lines[:shown]:
            out.append(line[:cols].ljust(min(cols, GUEST_COLS)) + "\x1b[K\r\n")
        if small:
            note = f"terminal {cols}x{rows} < guest {GUEST_COLS}x{GUEST_ROWS}: enlarge it; Ctrl-A x quits"
            out.append(f"\x1b[{rows};1H\x1b[7m{note[:max(cols - 1, 0)]}\x1b[0m\x1b[K")
        else:
            if rows > GUEST_ROWS:
                out.append(self._status_sequence(cols))
            row, col = cursor(machine.cpu)
            out.append(f"\x1b[{row + 1};{col + 1}H")
        self.out.write("".join(out))
        self.out.flush()

    def status(self, text: str | None) -> None:
        """Show `text` on the status line (None: the how-to-quit line again); on a terminal of 25 rows or
        fewer, in the window title."""
        self._status = text or STATUS
        cols, rows = self._size or self.terminal_size()
        if rows > GUEST_ROWS and cols >= GUEST_COLS:
            self.out.write(self._status_sequence(cols))
        else:
            self.out.write(f"\x1b]2;{text or 'nbdboot (Ctrl-A x quits)'}\x07")
        self.out.flush()

    def _status_sequence(self, cols: int) -> str:
        """Row 26 in reverse video, the cursor saved and restored around it."""
        return f"\x1b7\x1b[{GUEST_ROWS + 1};1H\x1b[7m{self._status[:cols - 1]}\x1b[0m\x1b[K\x1b8"

    def keys(self):
        if not select.select([self.fd], [], [], 0)[0]:
            return []
        data = os.read(self.fd, 256).decode("latin-1")
        guest: list[str] = []
        items: list = []
        for ch in data:
            if self._prefix:
                self._prefix = False
                if ch in QUIT_KEYS:
                    raise KeyboardInterrupt
                if ch in SEND_PREFIX_KEYS:
                    guest.append(PREFIX)
                elif ch in BREAK_KEYS:    # QEMU's Ctrl-A b sends a break; the PC's is Ctrl-Break
                    items += terminal_keys("".join(guest)) + [("key", NAMED_KEYS["ctrl-break"])]
                    guest = []
                continue                  # any other command key is ignored, as in QEMU
            if ch == PREFIX:
                self._prefix = True
                continue
            guest.append(ch)
        return items + terminal_keys("".join(guest))

    def finish(self, machine) -> None:
        self.close()
        self.out.write("\n".join(screen_lines(machine.cpu)).rstrip("\n") + "\n")
        self.out.flush()

    def close(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None
            self.out.write("\x1b[?1049l")
            self.out.flush()
