"""System control ports: A at 92h (fast A20, fast reset) and B at 61h (PIT channel 2 gate,
speaker, the refresh toggle that timing loops count)."""

from __future__ import annotations


class SystemControlA:
    """Port 92h: bit 1 gates A20 (fast A20: as in QEMU, the last write to this port or to the
    8042's output port sets the line), bit 0 going from 0 to 1 resets the PC (PIIX3 fast init)."""

    def __init__(self, machine=None):
        self.m = machine
        self.value = 0x02  # SeaBIOS's POST enables A20 here

    def attach(self, bus) -> None:
        bus.register((0x92,), self.read, self.write, "port 92h")

    def read(self, port: int) -> int:
        return self.value

    def write(self, port: int, value: int) -> None:
        rising = value & 0x01 and not self.value & 0x01
        self.value = value & 0x03
        if self.m is not None:
            self.m.cpu.set_a20(bool(value & 0x02))
            if rising:
                self.m.request_reset("port 92h bit 0 (fast reset)")


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
