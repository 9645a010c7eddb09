"""The MC146818 CMOS RTC and its RAM (index port 70h, data port 71h)."""

from __future__ import annotations

import time


def bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


class Cmos:
    def __init__(self, clock, floppy_type: int = 0, ext_kb: int = 0):
        self.clock = clock
        self.index = 0
        self.ram = bytearray(128)
        self.ram[0x0A] = 0x26
        self.ram[0x0B] = 0x02  # 24-hour, BCD
        self.ram[0x0D] = 0x80  # battery good
        self.ram[0x10] = (floppy_type << 4) & 0xF0
        self.ram[0x14] = 0x41 if floppy_type else 0x40  # equipment: floppy, colour 80x25
        self.ram[0x15], self.ram[0x16] = 0x80, 0x02  # 640 KiB base
        ext = min(ext_kb, 0xFFFF)
        self.ram[0x17], self.ram[0x18] = ext & 0xFF, ext >> 8
        self.ram[0x30], self.ram[0x31] = ext & 0xFF, ext >> 8
        ext16 = max(0, min((ext_kb - 15 * 1024) // 64, 0xFFFF))
        self.ram[0x34], self.ram[0x35] = ext16 & 0xFF, ext16 >> 8
        self.ram[0x32] = 0x20  # century, BCD

    def attach(self, bus) -> None:
        bus.register((0x70,), None, self.select, "cmos")
        bus.register((0x71,), lambda port: self.read(), lambda port, v: self.write(v), "cmos")

    def select(self, port: int, value: int) -> None:
        self.index = value & 0x7F  # bit 7 is the NMI mask

    def now(self) -> time.struct_time:
        return time.localtime(self.clock.wall_epoch + self.clock.now)

    def read(self) -> int:
        i = self.index
        t = self.now()
        rtc = {0x00: t.tm_sec, 0x02: t.tm_min, 0x04: t.tm_hour, 0x06: (t.tm_wday + 1) % 7 + 1,
               0x07: t.tm_mday, 0x08: t.tm_mon, 0x09: t.tm_year % 100, 0x32: t.tm_year // 100}
        if i in rtc:
            return bcd(rtc[i])
        return self.ram[i]

    def write(self, value: int) -> None:
        if self.index not in (0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0C, 0x0D):
            self.ram[self.index] = value
