"""The Bochs/QEMU shutdown port (8900h): writing "Shutdown" there turns the PC off, the
path Bochs's and older QEMU BIOSes take for an APM power-off."""

from __future__ import annotations

SHUTDOWN = b"Shutdown"


class PowerPorts:
    def __init__(self, machine=None):
        self.m = machine
        self.matched = 0

    def attach(self, bus) -> None:
        bus.register((0x8900,), None, self.write, "shutdown port")

    def write(self, port: int, value: int) -> None:
        if value == SHUTDOWN[self.matched]:
            self.matched += 1
            if self.matched == len(SHUTDOWN):
                self.matched = 0
                if self.m is not None:
                    self.m.power_off('"Shutdown" written to port 8900h')
        else:
            self.matched = 1 if value == SHUTDOWN[0] else 0
