"""Signals and the run's deadline, for code blocked on the network.

API
    install()                 main thread, once per process: SIGTERM and SIGHUP raise Terminated (a
                              KeyboardInterrupt, so every Ctrl-C cleanup runs for them too), and a wakeup
                              pipe records every signal so a wait can see a Ctrl-C someone else deferred
    set_deadline(when, what)  monotonic time after which waits in the main thread raise DeadlineReached
    postpone_deadline(s)      move it later (gdb held the guest stopped: --timeout does not count that)
                              (`what` names it in the message: "--timeout 20 s"); None clears it
    set_poll(fn)              fn() runs in the main thread at each check() (a live terminal reads its keys
                              there, so Ctrl-C typed while the guest waits on the network is seen); None clears
    watch(event)              in a background thread: its waits raise Cancelled once `event` has been set
                              for STOP_GRACE (a reply on its way is still taken)
    check()                   raise what a wait must stop for: a signal that came in, the deadline
                              (main thread), the watched event (other threads)
    remaining(limit)          seconds a wait may block: limit, cut short by the deadline
    sleep(seconds)            time.sleep in TICK steps, calling check() between them
    TICK                      the longest any wait blocks without calling check()

A blocking wait (socket recv, select, sleep) uses at most TICK at a time and calls check() when it
runs out, so Ctrl-C, SIGTERM and --timeout end it within TICK whatever the signal handler in force
does: the run loop defers Ctrl-C while the guest runs (raising inside a Unicorn hook would be lost),
and the wakeup pipe is how a wait in a hook learns of it. Only the main thread is interrupted:
a background thread (a copier) ends when the event it watches is set.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from nbdboot.errors import EXIT_NBD, NbdbootError

TICK = 0.25
STOP_GRACE = 0.5   # how long a background wait may go on after its owner asked it to stop

_deadline: float | None = None
_deadline_what = ""
_wakeup_r: int | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: ends the command as Ctrl-C does, with exit code 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum

    def __str__(self) -> str:
        return signal.Signals(self.signum).name


class Cancelled(BaseException):
    """A background thread's wait ended because its owner asked it to stop (interrupt.watch)."""


class DeadlineReached(NbdbootError):
    """The run's --timeout came while waiting on an NBD server (exit 3: the server is why)."""

    exit_code = EXIT_NBD


def _terminate(signum, _frame):
    raise Terminated(signum)


def install() -> None:
    global _wakeup_r
    if threading.current_thread() is not threading.main_thread() or _wakeup_r is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _terminate)
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    try:
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except ValueError:
        os.close(r)
        os.close(w)
        return
    _wakeup_r = r


_local = threading.local()
_poll = None


def set_poll(fn) -> None:
    global _poll
    _poll = fn


def watch(event: threading.Event | None) -> None:
    _local.stop = event
    _local.stop_seen = None


def set_deadline(when: float | None, what: str = "") -> None:
    global _deadline, _deadline_what
    _deadline, _deadline_what = when, what


def postpone_deadline(seconds: float) -> None:
    """Move the deadline later by `seconds` (the time a debugger held the guest stopped)."""
    global _deadline
    if _deadline is not None:
        _deadline += seconds


def _deferred_sigint_seen() -> bool:
    """A Ctrl-C came in while a handler other than Python's default held it back (the run loop's).

    Under the default handler, or SIGTERM/SIGHUP under ours, the handler has raised already and the
    byte in the pipe is a leftover: looking at it later would interrupt the cleanup after the first."""
    if _wakeup_r is None:
        return False
    try:
        data = os.read(_wakeup_r, 512)
    except OSError:
        return False
    if signal.SIGINT not in data:
        return False
    handler = signal.getsignal(signal.SIGINT)
    return handler not in (signal.default_int_handler, signal.SIG_IGN, signal.SIG_DFL, None)


def check(waiting_for: str = "the NBD server") -> None:
    if threading.current_thread() is not threading.main_thread():
        stop = getattr(_local, "stop", None)
        if stop is not None and stop.is_set():
            # A request that is merely slow may still finish and be kept; a silent one is given up.
            now = time.monotonic()
            seen = getattr(_local, "stop_seen", None)
            if seen is None:
                _local.stop_seen = now
            elif now - seen >= STOP_GRACE:
                raise Cancelled
        return
    if _deferred_sigint_seen():
        raise KeyboardInterrupt
    if _poll is not None:
        _poll()
    if _deadline is not None and time.monotonic() >= _deadline:
        raise DeadlineReached(f"{_deadline_what or 'the deadline'} reached while waiting for {waiting_for}")


def remaining(limit: float) -> float:
    """How long a wait of `limit` seconds may last in this thread before the deadline."""
    if _deadline is None or threading.current_thread() is not threading.main_thread():
        return limit
    return max(0.0, min(limit, _deadline - time.monotonic()))


def sleep(seconds: float, waiting_for: str = "the NBD server") -> None:
    end = time.monotonic() + seconds
    while True:
        check(waiting_for)
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, TICK))
