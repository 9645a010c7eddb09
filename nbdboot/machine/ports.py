"""The ISA I/O port space: each device registers the ports it decodes.

As in v86 (`io.register_read`) and QEMU (`MemoryRegion` on the I/O address
space), the bus knows nothing about devices; a device calls `register()` for its
own ports when it is attached. A port nobody decodes reads as all-ones (the
floating ISA bus) and swallows writes.

Handlers are byte-wide unless registered `wide`: a 16- or 32-bit IN/OUT on a
byte-wide port is split into byte accesses to consecutive ports, as the ISA bus
does; a wide handler (PCI configuration data) receives the access whole.
"""

from __future__ import annotations

from typing import Callable, Iterable

Reader = Callable[[int], int]
Writer = Callable[[int, int], None]
WideReader = Callable[[int, int], int]
WideWriter = Callable[[int, int, int], None]


def _ignore(port: int, value: int) -> None:
    pass


def _float(port: int) -> int:
    return 0xFF


class PortBus:
    def __init__(self):
        self._read: dict[int, Reader] = {}
        self._write: dict[int, Writer] = {}
        self._wide_read: dict[int, WideReader] = {}
        self._wide_write: dict[int, WideWriter] = {}
        self._owner: dict[int, str] = {}

    def register(self, ports: Iterable[int], read: Reader | None = None, write: Writer | None = None,
                 owner: str = "") -> None:
        """Decode `ports` byte-wide: `read(port) -> byte`, `write(port, byte)`. A device that only
        listens (or only answers) passes one of them; the other direction floats."""
        for port in ports:
            self._claim(port, owner)
            self._read[port] = read or _float
            self._write[port] = write or _ignore

    def register_wide(self, ports: Iterable[int], read: WideReader, write: WideWriter, owner: str = "") -> None:
        """Decode `ports` at the access's own width: `read(port, size) -> value`, `write(port, size, value)`."""
        for port in ports:
            self._claim(port, owner)
            self._wide_read[port] = read
            self._wide_write[port] = write

    def _claim(self, port: int, owner: str) -> None:
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"I/O port {port:#x} out of range")
        held = self._owner.get(port)
        if held is not None and held != owner:
            raise ValueError(f"I/O port {port:#06x} is already decoded by {held}")
        self._owner[port] = owner

    def owner(self, port: int) -> str | None:
        return self._owner.get(port)

    def inb(self, port: int) -> int:
        return self._read.get(port, _float)(port) & 0xFF

    def outb(self, port: int, value: int) -> None:
        self._write.get(port, _ignore)(port, value & 0xFF)

    def read(self, port: int, size: int) -> int:
        wide = self._wide_read.get(port)
        if wide is not None:
            return wide(port, size) & ((1 << (8 * size)) - 1)
        value = self.inb(port)
        for i in range(1, size):
            value |= self.inb((port + i) & 0xFFFF) << (8 * i)
        return value

    def write(self, port: int, size: int, value: int) -> None:
        wide = self._wide_write.get(port)
        if wide is not None:
            wide(port, size, value & ((1 << (8 * size)) - 1))
            return
        for i in range(size):
            self.outb((port + i) & 0xFFFF, value >> (8 * i))
