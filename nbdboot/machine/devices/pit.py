"""The 8254 programmable interval timer (ports 40h-43h) against the virtual clock.

Each counter is computed from the time it started counting, never stepped: its
count, its OUT line and the time of its next OUT edge follow from the mode, the
reload value and the clock (Intel 8254 datasheet, "Mode definitions"):

- mode 0 (interrupt on terminal count): OUT goes high N+1 clocks after the count
  is written and stays high; the counter wraps and goes on counting, no second edge.
- mode 1/5 (hardware-retriggerable one-shot / strobe): started by a rising GATE edge;
  channel 0's GATE is tied high, so there it never fires.
- mode 2 (rate generator): OUT low for one clock every N clocks, periodic.
- mode 3 (square wave): OUT high for ceil(N/2) clocks, low for floor(N/2), the count
  going down by two.
- mode 4 (software-triggered strobe): one low pulse N+1 clocks after the write.

GATE low stops counting in modes 0 and 4 and holds OUT high in modes 2 and 3; a
rising edge restarts modes 1, 2, 3 and 5. Channel 0's GATE is always high, channel
2's is port 61h bit 0. IRQ0 is channel 0's OUT rising edge: `next_irq0()` gives the
machine the time of the next one. The counter latch command and the read-back
command (latch count and/or status of several counters) work as documented; BCD
counting is treated as binary.
"""

from __future__ import annotations

import math

PIT_HZ = 1193182


class Counter:
    def __init__(self, clock, gate: bool):
        self.clock = clock
        self.mode = 3
        self.access = 3            # 1 low byte, 2 high byte, 3 low then high
        self.reload = 0x10000
        self.armed = False         # a count was written since the control word
        self.start = 0.0           # when counting (re)started, virtual seconds
        self.paused_ticks = 0      # clocks counted before GATE went low (modes 0, 4)
        self.gate = gate
        self.triggered = gate      # modes 1/5: a GATE edge started it
        self.latched: list[int] = []  # bytes of a latched count still to read
        self.status: int | None = None  # a latched status byte (read-back)
        self.write_low = True
        self.read_low = True
        self.pending_low = 0
        self.bcd = False

    # -- time ------------------------------------------------------------------------
    def ticks(self, now: float | None = None) -> int:
        """Clocks counted since the count was loaded."""
        if not self.armed:
            return 0
        if self.mode in (0, 4) and not self.gate:
            return self.paused_ticks
        if self.mode in (1, 5) and not self.triggered:
            return 0
        now = self.clock.live() if now is None else now
        return self.paused_ticks + max(0, int((now - self.start) * PIT_HZ + 1e-6))

    def count(self) -> int:
        n = self.reload
        if not self.armed:
            return n & 0xFFFF
        t = self.ticks()
        if self.mode in (0, 1, 4, 5):
            return (n - t) & 0xFFFF
        phase = t % n
        if self.mode == 2:
            return (n - phase) & 0xFFFF
        # mode 3: the count goes down by two each clock and reloads at each half period
        first = (n + 1) // 2
        into = phase if phase < first else phase - first
        return max(2, (n & ~1) - 2 * into) & 0xFFFF

    def out(self) -> bool:
        if not self.armed:
            return self.mode != 0  # after a mode 0 control word OUT is low, else high
        t = self.ticks()
        n = self.reload
        if self.mode == 0:
            return t >= n
        if self.mode == 1:
            return not self.triggered or t >= n
        if self.mode == 2:
            return not self.gate or (t % n) != n - 1
        if self.mode == 3:
            return not self.gate or (t % n) < (n + 1) // 2
        if self.mode in (4, 5):
            return t != n
        return True

    def next_rise(self, after: float) -> float:
        """Virtual time of OUT's next rising edge strictly after `after`; inf if none will come."""
        if not self.armed or not self.gate:
            return math.inf
        n = self.reload
        if self.mode == 0:
            edge = self.start + n / PIT_HZ
            return edge if edge > after else math.inf
        if self.mode in (1, 5):
            return math.inf  # needs a GATE edge; channel 0's GATE never moves
        if self.mode == 4:
            edge = self.start + (n + 1) / PIT_HZ
            return edge if edge > after else math.inf
        # modes 2 and 3: periodic, OUT rises once per period
        period = n / PIT_HZ
        k = max(1, math.floor((after - self.start) / period))
        edge = self.start + k * period
        while edge <= after:  # (floating point: step until strictly later)
            k += 1
            edge = self.start + k * period
        return edge

    # -- programming -----------------------------------------------------------------
    def control(self, access: int, mode: int, bcd: bool) -> None:
        self.access = access
        self.mode = mode if mode < 6 else mode - 4  # 6 and 7 are modes 2 and 3
        self.bcd = bcd
        self.write_low = self.read_low = True
        self.armed = False
        self.latched = []
        self.status = None

    def write(self, value: int, now: float) -> bool:
        """A data byte at time `now`; True when a full count was written (counting (re)starts)."""
        if self.access == 3:
            if self.write_low:
                self.pending_low = value
                self.write_low = False
                if self.mode == 0:
                    self.armed = False  # writing the first byte stops a mode 0 count
                return False
            value = self.pending_low | (value << 8)
            self.write_low = True
        elif self.access == 2:
            value <<= 8
        # (In modes 2 and 3 the chip takes a new count at the end of the current period;
        # starting a fresh period at once is close enough.)
        self.reload = value or 0x10000
        self.armed = True
        self.paused_ticks = 0
        self.start = now
        self.triggered = self.mode not in (1, 5)
        return True

    def set_gate(self, gate: bool) -> None:
        if gate == self.gate:
            return
        now = self.clock.live()
        if not gate and self.mode in (0, 4):
            self.paused_ticks = self.ticks(now)
        if gate:
            if self.mode in (0, 4):
                self.start = now  # resume from paused_ticks
            else:  # rising edge: modes 1, 2, 3, 5 restart from the reload value
                self.start = now
                self.paused_ticks = 0
                self.triggered = True
        self.gate = gate

    def latch(self) -> None:
        if not self.latched:
            value = self.count()
            self.latched = {1: [value & 0xFF], 2: [value >> 8]}.get(self.access, [value & 0xFF, value >> 8])

    def latch_status(self) -> None:
        if self.status is None:
            self.status = ((0x80 if self.out() else 0) | (0 if self.armed else 0x40) | (self.access << 4)
                           | (self.mode << 1) | int(self.bcd))

    def read(self) -> int:
        if self.status is not None:
            value, self.status = self.status, None
            return value
        if self.latched:
            return self.latched.pop(0)
        value = self.count()
        if self.access == 1:
            return value & 0xFF
        if self.access == 2:
            return value >> 8
        low, self.read_low = self.read_low, not self.read_low
        return value & 0xFF if low else value >> 8


class Pit:
    """Counters 0 (IRQ0), 1 (refresh, idle) and 2 (port 61h: GATE, OUT, speaker)."""

    def __init__(self, clock):
        self.clock = clock
        self.counters = [Counter(clock, True), Counter(clock, True), Counter(clock, False)]
        # POST leaves counter 0 in mode 3 with 65536 (18.2 Hz), as every PC BIOS does
        self.counters[0].armed = True
        self.on_channel0_change = None

    def attach(self, bus) -> None:
        bus.register((0x40, 0x41, 0x42), lambda port: self.counters[port - 0x40].read(),
                     lambda port, v: self.write_data(port - 0x40, v), "8254")
        bus.register((0x43,), None, lambda port, v: self.write_control(v), "8254")

    # compatibility with the machine and port 61h
    def set_gate2(self, gate: bool) -> None:
        self.counters[2].set_gate(gate)

    def out2(self) -> bool:
        return self.counters[2].out()

    def period(self, channel: int = 0) -> float:
        return self.counters[channel].reload / PIT_HZ

    def next_irq0(self, after: float) -> float:
        """Time of the next IRQ0 (counter 0's OUT rising edge) after `after`; inf if none."""
        return self.counters[0].next_rise(after)

    def write_control(self, value: int) -> None:
        channel = value >> 6
        if channel == 3:  # read-back: bit 5 clear latches counts, bit 4 clear latches status
            for ch in range(3):
                if value & (2 << ch):
                    if not value & 0x20:
                        self.counters[ch].latch()
                    if not value & 0x10:
                        self.counters[ch].latch_status()
            return
        access = (value >> 4) & 3
        if access == 0:
            self.counters[channel].latch()
            return
        self.counters[channel].control(access, (value >> 1) & 7, bool(value & 1))
        if channel == 0 and self.on_channel0_change:
            self.on_channel0_change()  # counting stops until the count is written

    def write_data(self, channel: int, value: int) -> None:
        counter = self.counters[channel]
        # Counter 0 starts at the slice's time, as IRQ0 is scheduled between slices; the others live.
        started = counter.write(value, self.clock.now if channel == 0 else self.clock.live())
        if channel == 0 and self.on_channel0_change and (started or counter.mode == 0):
            self.on_channel0_change()
