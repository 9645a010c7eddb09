"""PCI configuration mechanism #1 (address port CF8h, data ports CFCh-CFFh) with the
two functions every PC has, as QEMU's `pc` machine presents them: the i440FX host
bridge at 00:00.0 and the PIIX3 PCI-to-ISA bridge at 00:01.0. Also the PIIX3's
reset control register at CF9h (bit 2 with bit 1: hard reset).

Identification and class registers are read-only; the command register, latency
timer, interrupt line and the device-specific area (40h-FFh: PAM, PIRQ routing...)
hold what the guest writes, with no further effect. A read of a function nobody
decodes returns all ones, as on a real bus (the vendor ID FFFFh means "absent").
"""

from __future__ import annotations

import struct


class PciFunction:
    def __init__(self, vendor: int, device: int, class_code: int, revision: int = 0,
                 header_type: int = 0, subsystem: tuple[int, int] = (0x1AF4, 0x1100)):
        self.config = bytearray(256)
        struct.pack_into("<HHHH", self.config, 0, vendor, device, 0x0007 if class_code >> 16 == 6 else 0, 0x0200)
        self.config[0x08] = revision
        self.config[0x09:0x0C] = (class_code & 0xFFFFFF).to_bytes(3, "little")
        self.config[0x0E] = header_type
        struct.pack_into("<HH", self.config, 0x2C, *subsystem)
        self.writable = bytearray(256)
        for offset in (0x04, 0x05, 0x0C, 0x0D, 0x3C):
            self.writable[offset] = 0xFF
        self.writable[0x40:0x100] = b"\xff" * 0xC0

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            mask = self.writable[offset + i]
            byte = (value >> (8 * i)) & 0xFF
            self.config[offset + i] = (self.config[offset + i] & ~mask) | (byte & mask)


def i440fx() -> PciFunction:
    host = PciFunction(0x8086, 0x1237, 0x060000, revision=0x02)
    host.config[0x59:0x60] = bytes(7)  # PAM: BIOS areas routed to ROM (ours are RAM anyway)
    return host


def piix3_isa() -> PciFunction:
    isa = PciFunction(0x8086, 0x7000, 0x060100, header_type=0x80)  # multi-function device
    isa.config[0x60:0x64] = b"\x80\x80\x80\x80"  # PIRQ routing disabled
    return isa


class PciBus:
    def __init__(self, machine=None):
        self.m = machine
        self.address = 0
        self.functions: dict[tuple[int, int, int], PciFunction] = {
            (0, 0, 0): i440fx(),
            (0, 1, 0): piix3_isa(),
        }
        self.reset_control = 0

    def attach(self, bus) -> None:
        bus.register_wide((0xCF8,), self._read_address, self._write_address, "pci")
        bus.register((0xCF9,), lambda port: self.reset_control, self._write_reset_control, "pci")
        bus.register_wide((0xCFC, 0xCFD, 0xCFE, 0xCFF), self._read_data, self._write_data, "pci")

    # -- the guest's view ----------------------------------------------------------------
    def find(self, bus: int, device: int, function: int) -> PciFunction | None:
        return self.functions.get((bus, device, function))

    def read_config(self, bus: int, devfn: int, offset: int, size: int) -> int:
        f = self.find(bus, devfn >> 3, devfn & 7)
        if f is None:
            return (1 << (8 * size)) - 1
        return f.read(offset, size)

    def write_config(self, bus: int, devfn: int, offset: int, size: int, value: int) -> None:
        f = self.find(bus, devfn >> 3, devfn & 7)
        if f is not None:
            f.write(offset, size, value)

    # -- ports -----------------------------------------------------------------------------
    def _read_address(self, port: int, size: int) -> int:
        if size == 4:
            return self.address
        return (1 << (8 * size)) - 1 if size == 1 else ((self.reset_control << 8) | 0xFF)

    def _write_address(self, port: int, size: int, value: int) -> None:
        if size == 4:
            self.address = value & 0x80FFFFFC
        elif size == 2:
            self._write_reset_control(0xCF9, value >> 8)

    def _write_reset_control(self, port: int, value: int) -> None:
        if value & 0x04 and self.m is not None:
            self.m.request_reset("PCI reset control register (CF9h)")
        self.reset_control = value & 0x0A

    def _target(self, port: int):
        a = self.address
        if not a & 0x80000000:
            return None
        return (a >> 16) & 0xFF, (a >> 8) & 0xFF, (a & 0xFC) + (port & 3)

    def _read_data(self, port: int, size: int) -> int:
        target = self._target(port)
        if target is None:
            return (1 << (8 * size)) - 1
        bus, devfn, offset = target
        return self.read_config(bus, devfn, offset, min(size, 256 - offset))

    def _write_data(self, port: int, size: int, value: int) -> None:
        target = self._target(port)
        if target is not None:
            bus, devfn, offset = target
            self.write_config(bus, devfn, offset, min(size, 256 - offset), value)
