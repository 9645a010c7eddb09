"""The 8254 programmable interval timer (ports 40h-43h) against the virtual clock."""

from __future__ import annotations

PIT_HZ = 1193182


class Pit:
    """8254 channels 0 and 2 against the virtual clock (seconds)."""

    def __init__(self, clock):
        self.clock = clock
        self.reload = [0x10000, 0x10000, 0x10000]
        self.mode = [3, 2, 3]
        self.start = [0.0, 0.0, 0.0]
        self.access = [3, 3, 3]
        self.latch: list[int | None] = [None, None, None]
        self._write_low = [True] * 3
        self._read_low = [True] * 3
        self._pending_low = [0, 0, 0]
        self.gate2 = False
        self.on_channel0_change = None

    def attach(self, bus) -> None:
        bus.register((0x40, 0x41, 0x42), lambda port: self.read_data(port - 0x40),
                     lambda port, v: self.write_data(port - 0x40, v), "8254")
        bus.register((0x43,), None, lambda port, v: self.write_control(v), "8254")

    def set_gate2(self, gate: bool) -> None:
        """Channel 2's GATE input (port 61h bit 0): a rising edge restarts the count."""
        if gate and not self.gate2:
            self.start[2] = self.clock.live()
        self.gate2 = gate

    def period(self, channel: int = 0) -> float:
        return self.reload[channel] / PIT_HZ

    def _count(self, ch: int) -> int:
        ticks = int((self.clock.live() - self.start[ch]) * PIT_HZ)
        if ch == 2 and not self.gate2:
            ticks = 0
        reload = self.reload[ch]
        return reload - (ticks % reload)

    def out2(self) -> bool:
        if not self.gate2:
            return True
        ticks = int((self.clock.live() - self.start[2]) * PIT_HZ)
        if self.mode[2] in (0, 1):
            return ticks >= self.reload[2]
        return (ticks % self.reload[2]) < self.reload[2] // 2

    def write_control(self, value: int) -> None:
        ch = value >> 6
        if ch == 3:
            return
        access = (value >> 4) & 3
        if access == 0:
            self.latch[ch] = self._count(ch)
            return
        self.access[ch] = access
        self.mode[ch] = (value >> 1) & 7
        self._write_low[ch] = self._read_low[ch] = True

    def write_data(self, ch: int, value: int) -> None:
        access = self.access[ch]
        if access == 3:
            if self._write_low[ch]:
                self._pending_low[ch] = value
                self._write_low[ch] = False
                return
            value = self._pending_low[ch] | (value << 8)
            self._write_low[ch] = True
        elif access == 2:
            value <<= 8
        self.reload[ch] = value or 0x10000
        # Channel 0 counts from the slice's time, as IRQ0 is scheduled; the others live.
        self.start[ch] = self.clock.now if ch == 0 else self.clock.live()
        if ch == 0 and self.on_channel0_change:
            self.on_channel0_change()

    def read_data(self, ch: int) -> int:
        value = self.latch[ch] if self.latch[ch] is not None else self._count(ch)
        access = self.access[ch]
        if access == 1:
            self.latch[ch] = None
            return value & 0xFF
        if access == 2:
            self.latch[ch] = None
            return (value >> 8) & 0xFF
        if self._read_low[ch]:
            self._read_low[ch] = False
            return value & 0xFF
        self._read_low[ch] = True
        self.latch[ch] = None
        return (value >> 8) & 0xFF
