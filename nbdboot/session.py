"""Running a machine against expectations: texts to see, in order, before a deadline.

The first expectation is met when its text is on screen or on a serial line.
Each later one must be *new* after the previous match: printed by the guest
since then (the teletype transcript or a UART's output), or on screen more times
than when the previous one was met; so
`--expect 'A:\\>' --keys 'ver\\n' --expect 'A:\\>'` waits for the second prompt.
The screen is read between slices (4000 bytes of B800 are cheap; hooking screen
writes would slow every store). The deadline is wall-clock time, so a guest
spinning with interrupts off still ends.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

from nbdboot.console.screen import CP437, screen_text
from nbdboot.errors import NbdbootError
from nbdboot.machine.machine import GuestPoweredOff

SCREEN_CHECK_INTERVAL = 0.02  # seconds of wall time between screen checks
# An idle guest's clock may run this far ahead of the wall clock (boot-time
# waits end at once); beyond it the session sleeps instead of spinning the CPU.
IDLE_SLACK = 10.0


@contextmanager
def deferred_sigint():
    """Ctrl-C while the guest runs: noted, then raised between slices.

    Raised at once it would surface inside whichever Unicorn hook Python was
    running, and ctypes drops exceptions raised on entry to a callback, so the
    run would go on. A second Ctrl-C raises at once, for a guest stuck in a hook.
    """
    pressed = []

    def note(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)

    def check() -> None:
        if pressed:
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield check          # ignored or handled by the embedder: leave it be
        return
    signal.signal(signal.SIGINT, note)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class Outcome:
    __slots__ = ("met", "timed_out", "seen", "missing", "seconds")

    def __init__(self, met: bool, timed_out: bool, seen: list[str] | None = None,
                 missing: str | None = None, seconds: float = 0.0):
        self.met = met                  # every expectation seen
        self.timed_out = timed_out
        self.seen = [] if seen is None else seen
        self.missing = missing          # first expectation not seen
        self.seconds = seconds

    def __repr__(self) -> str:
        return (f"Outcome(met={self.met}, timed_out={self.timed_out}, seen={self.seen!r}, "
                f"missing={self.missing!r}, seconds={self.seconds:.2f})")


class Session:
    def __init__(self, machine, console, expects=(), timeout: float | None = None, expect_on: str = "any"):
        """`expect_on`: where --expect looks: "screen" (the screen and teletype text), "serial" (what
        the guest sent on its UARTs) or "any"."""
        self.machine = machine
        self.console = console
        self.expects = list(expects)
        self.timeout = timeout
        self.look_screen = expect_on in ("screen", "any")
        self.look_serial = expect_on in ("serial", "any")
        self.transcript: list[str] = []
        self.paused = 0.0  # seconds a debugger held the guest stopped: not counted against the timeout
        video = machine.bios.video
        forward = video.on_output

        def tap(ch: int) -> None:
            if ch != 0x0D:
                self.transcript.append(CP437[ch] if ch != 0x0A else "\n")
            if forward:
                forward(ch)

        video.on_output = tap

    def run(self) -> Outcome:
        with deferred_sigint() as check_interrupt:
            return self._run(check_interrupt)

    def _run(self, check_interrupt) -> Outcome:
        m = self.machine
        start = time.monotonic()
        deadline = None if self.timeout is None else start + self.timeout
        paused_before = self.paused
        pending = list(self.expects)
        seen: list[str] = []
        mark = 0            # transcript position after the last match
        serial_mark = 0     # the same in the serial output
        baseline = None     # screen text when the last match happened
        next_check = 0.0
        while True:
            keys = self.console.keys()
            if keys:
                m.bios.keyboard.type_keys(keys, start_now=True)
            try:
                m.run_slice()
            except GuestPoweredOff:
                self.console.update(m)  # what the guest showed last still counts: a wait may end on it
                raise
            except NbdbootError:
                self._raise_lost_connection()  # a crash or failed boot after the disk died: the disk is the cause
                raise
            check_interrupt()
            now = time.monotonic()
            # A guest that waits for a key or has halted until the next tick has likely just
            # written what it wanted to say: look now, not after the idle sleep below.
            if pending and (now >= next_check or m.waiting_in_bios or m.idle_since is not None):
                next_check = now + SCREEN_CHECK_INTERVAL
                text = screen_text(m.cpu) if self.look_screen else ""
                output = "".join(self.transcript) if self.look_screen else ""
                serial = self._serial_text() if self.look_serial else ""
                while pending:
                    want = pending[0]
                    at = output.find(want, mark)
                    serial_at = serial.find(want, serial_mark)
                    if at >= 0:
                        mark, serial_mark = at + len(want), len(serial)
                    elif serial_at >= 0:
                        mark, serial_mark = len(output), serial_at + len(want)
                    elif want in text and (baseline is None or text.count(want) > baseline.count(want)):
                        mark, serial_mark = len(output), len(serial)
                    else:
                        break
                    seen.append(pending.pop(0))
                    baseline = text
                if not pending:
                    self.console.update(m)
                    return Outcome(True, False, seen, None, now - start)
            self.console.update(m)
            if m.idle_since is not None and not m.bios.keyboard.queue:
                ahead = m.clock.now - (now - start) - IDLE_SLACK
                if ahead > 0:
                    time.sleep(min(ahead, 0.05))
            if deadline is not None and now >= deadline + self.paused - paused_before:
                if pending:
                    self._raise_lost_connection()
                return Outcome(not pending, True, seen, pending[0] if pending else None, now - start)

    def _serial_text(self) -> str:
        """What the guest sent on COM1, CRs dropped."""
        return bytes(self.machine.serial[0].output).decode("latin-1").replace("\r", "")

    def _raise_lost_connection(self) -> None:
        """The guest was told 04h when its disk's connection died for good, and carried on; a run that then falls
        short ends with that NBD error (exit 3)."""
        for device in self.machine.bios.disk.devices():
            if device.lost_connection is not None:
                raise device.lost_connection
