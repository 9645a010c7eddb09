"""Progress of a deploy or restore: a bar with rate and ETA on a terminal, a status line every few seconds
elsewhere, and the closing summary."""

from __future__ import annotations

import sys
import time


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


class Progress:
    """Bar on a TTY, a line per `interval` seconds elsewhere; silent when quiet."""

    def __init__(self, stream=None, *, tty: bool | None = None, interval: float = 5.0, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if not self.tty else 0.2
        self.quiet = quiet
        self.start = time.monotonic()
        self.last: float | None = None   # the first update always shows
        self.first_done: int | None = None
        self.shown: int | None = None   # `done` of the last line shown
        self._notes: dict[int, str] = {}   # per connection: "reconnecting (try 3/10)", shown instead of the speed
        self.stats = None               # the copier's, as of the last update

    def nbd_status(self, client, text: str | None) -> None:
        """An NbdClient status listener (nbdboot.nbd.client.status_listeners). A copy runs several
        connections: one that still works must not clear what another says while it reconnects."""
        if text:
            self._notes[id(client)] = text
        else:
            self._notes.pop(id(client), None)

    @property
    def note(self) -> str | None:
        """What a connection in trouble says (the latest), or None while all of them work."""
        return next(reversed(self._notes.values()), None)

    def update(self, done: int, total: int, stats, *, force: bool = False) -> None:
        self.stats = stats
        now = time.monotonic()
        if self.quiet or (not force and self.last is not None and now - self.last < self.interval):
            return
        if force and not self.tty and done == self.shown and not self.note:
            return   # the closing update would repeat the last line
        self.shown = done
        self.last = now
        if self.first_done is None:
            self.first_done = done
        elapsed = max(now - self.start, 1e-6)
        rate = stats.copied_bytes / elapsed            # data moved, what the network does
        progress_rate = (done - self.first_done) / elapsed   # incl. zeroes, what the ETA needs
        left = total - done
        eta = 0.0 if not left else (left / progress_rate if progress_rate > 0 else float("inf"))
        pct = 100.0 * done / total if total else 100.0
        eta_s = "--:--" if eta == float("inf") else f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
        note = self.note
        if note:
            if self.tty:
                self.stream.write(f"\r{pct:5.1f}% {human(done)}/{human(total)}: {note}\x1b[K")
            else:
                self.stream.write(f"nbdboot: {pct:5.1f}% {human(done)} of {human(total)} local: {note}\n")
        elif self.tty:
            width = 30
            fill = int(width * pct / 100)
            self.stream.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {pct:5.1f}% "
                              f"{human(done)}/{human(total)} {human(rate)}/s ETA {eta_s} ")
        else:
            self.stream.write(f"nbdboot: {pct:5.1f}% {human(done)} of {human(total)} local, "
                              f"{human(stats.copied_bytes)} copied, {human(rate)}/s, ETA {eta_s}\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()


def summary(stats, elapsed: float) -> str:
    rate = stats.copied_bytes / elapsed if elapsed > 0 else 0.0
    kept = f"{human(stats.fetched_bytes)} kept from guest reads, " if stats.fetched_bytes else ""
    return (f"copied {human(stats.copied_bytes)} ({stats.copied_bytes} bytes) in {elapsed:.2f}s "
            f"({human(rate)}/s), skipped {human(stats.zero_bytes)} as holes/zeroes, "
            f"{human(stats.skipped_bytes)} already local, {kept}"
            f"{human(stats.guest_bytes)} written by the guest")
