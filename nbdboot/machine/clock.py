"""The virtual clock: guest time in seconds since power-on.

While the guest runs, time follows the host's wall clock; while it idles (hlt
with interrupts on, a blocking keyboard read, a tight keyboard poll) time jumps
straight to the next event, so waiting costs no host CPU.
"""

from __future__ import annotations

import time

# One slice may be slow because the host stalled; the guest should not see
# seconds vanish in a single step.
MAX_STEP = 0.25


class VirtualClock:
    def __init__(self):
        self.now = 0.0
        self.wall_epoch = time.time()
        self._running_since: float | None = None

    def running(self, since: float | None = None) -> None:
        """A slice starts (at host time `since`, a perf_counter() value): until ran(), live() moves with the
        host clock."""
        self._running_since = time.perf_counter() if since is None else since

    def host_time_of(self, when: float) -> float:
        """The perf_counter() value at which live() reaches virtual time `when` in the running slice
        (inf when no slice runs or `when` is inf)."""
        if self._running_since is None or when == float("inf"):
            return float("inf")
        return self._running_since + max(when - self.now, 0.0)

    def ran(self, seconds: float) -> None:
        self._running_since = None
        self.now += min(max(seconds, 0.0), MAX_STEP)

    def live(self) -> float:
        """Guest time now, also in the middle of a slice. Devices a guest polls in a
        tight loop (GRUB calibrating against PIT channel 2) must see time pass, or the
        loop spins until the slice ends."""
        if self._running_since is None:
            return self.now
        return self.now + min(time.perf_counter() - self._running_since, MAX_STEP)

    def skip_to(self, when: float) -> None:
        if when > self.now:
            self.now = when
