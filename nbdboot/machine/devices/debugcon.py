"""Port E9h, the Bochs/QEMU debug console: bytes written there are the guest's log."""

from __future__ import annotations


class DebugConsole:
    def __init__(self, out=None):
        self.output = bytearray()
        self.out = out  # callable(bytes), or None to only collect

    def attach(self, bus) -> None:
        bus.register((0xE9,), lambda port: 0xE9, self.write, "debugcon")

    def write(self, port: int, value: int) -> None:
        self.output.append(value)
        if self.out:
            self.out(bytes((value,)))
