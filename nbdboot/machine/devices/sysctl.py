"""System control ports: A at 92h (fast A20, reset) and B at 61h (PIT channel 2 gate,
speaker, the refresh toggle that timing loops count)."""

from __future__ import annotations


class SystemControlA:
    """Port 92h. A20 is always on in Unicorn, so bit 1 reads back set."""

    def __init__(self):
        self.value = 0x02

    def attach(self, bus) -> None:
        bus.register((0x92,), lambda port: self.value | 0x02, self.write, "port 92h")

    def write(self, port: int, value: int) -> None:
        self.value = value | 0x02


class SystemControlB:
    """Port 61h: bit 0 gates PIT channel 2, bit 4 toggles every 15 us (DRAM refresh),
    bit 5 is channel 2's output."""

    def __init__(self, clock, pit):
        self.clock = clock
        self.pit = pit
        self.value = 0

    def attach(self, bus) -> None:
        bus.register((0x61,), self.read, self.write, "port 61h")

    def read(self, port: int) -> int:
        refresh = int(self.clock.live() * 66_666) & 1
        return (self.value & 0x0F) | (refresh << 4) | (0x20 if self.pit.out2() else 0)

    def write(self, port: int, value: int) -> None:
        self.pit.set_gate2(bool(value & 1))
        self.value = value & 0x0F
