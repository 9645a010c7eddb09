"""The MC146818 CMOS RTC and its RAM (index port 70h, data port 71h).

The clock is the host's local time at power-on plus the virtual clock (plus
whatever the guest set). Status registers as the datasheet has them:
A: update-in-progress (UIP, the last 244 us of each second), divider, periodic
rate; B: SET, the periodic (PIE), alarm (AIE) and update-ended (UIE) interrupt
enables, binary/BCD (DM) and 24/12-hour modes; C: IRQF, PF, AF, UF, cleared by
reading it; D: valid RAM and time. PF and UF are set at each periodic tick and
each second whether or not their interrupt is enabled; an enabled one raises
IRQ8 once until C is read (the machine asks `next_irq8` when to look).
"""

from __future__ import annotations

import math
import time

UIP_SECONDS = 244e-6
TIME_REGISTERS = (0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32)
ALARM_REGISTERS = (0x01, 0x03, 0x05)
MAX_OWED_SECONDS = 1.0  # periodic interrupts further behind are dropped, not delivered late (as the PIT's)


def bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def from_bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


class Cmos:
    def __init__(self, clock, floppy_type: int = 0, ext_kb: int = 0):
        self.clock = clock
        self.index = 0
        self.offset = 0.0  # seconds the guest moved the clock by
        self.raise_irq = None  # callable(irq), set by the machine
        self.on_schedule = None  # callable(virtual time of the next IRQ8): the machine ends its slice by then
        self.ram = bytearray(128)
        self.ram[0x0A] = 0x26  # 32.768 kHz divider, 1024 Hz periodic rate
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
        self.flags = 0          # register C
        self._seen = 0.0        # virtual time up to which periodic ticks and seconds were counted
        self._tick_hz = 0.0     # the periodic interrupt's rate while PIE is on, else 0
        self._tick_at = math.inf  # virtual time of the next periodic interrupt owed
        self.next_irq8 = math.inf

    def attach(self, bus) -> None:
        bus.register((0x70,), None, self.select, "cmos")
        bus.register((0x71,), lambda port: self.read(), lambda port, v: self.write(v), "cmos")

    def select(self, port: int, value: int) -> None:
        self.index = value & 0x7F  # bit 7 is the NMI mask

    # -- time ------------------------------------------------------------------------
    def seconds(self, now: float | None = None) -> float:
        """RTC time as a Unix time."""
        return self.clock.wall_epoch + (self.clock.now if now is None else now) + self.offset

    def now(self) -> time.struct_time:
        return time.localtime(self.seconds())

    def _fields(self, t: time.struct_time) -> dict[int, int]:
        return {0x00: t.tm_sec, 0x02: t.tm_min, 0x04: t.tm_hour, 0x06: (t.tm_wday + 1) % 7 + 1,
                0x07: t.tm_mday, 0x08: t.tm_mon, 0x09: t.tm_year % 100, 0x32: t.tm_year // 100}

    def _encode(self, index: int, value: int) -> int:
        b = self.ram[0x0B]
        pm = 0
        if index == 0x04 and not b & 0x02:  # 12-hour mode: 1-12, bit 7 = PM
            pm = 0x80 if value >= 12 else 0
            value = value % 12 or 12
        return (value if b & 0x04 else bcd(value)) | pm

    def _decode(self, index: int, value: int) -> int:
        b = self.ram[0x0B]
        pm = index == 0x04 and not b & 0x02 and value & 0x80
        value &= 0x7F if index == 0x04 else 0xFF
        value = value if b & 0x04 else from_bcd(value)
        if index == 0x04 and not b & 0x02:
            value = value % 12 + (12 if pm else 0)
        return value

    def _periodic_hz(self) -> float:
        rate = self.ram[0x0A] & 0x0F
        if not rate or (self.ram[0x0A] & 0x70) != 0x20:
            return 0.0
        return 32768 / (1 << (rate - 1)) if rate > 2 else (256.0 if rate == 1 else 128.0)

    def update(self, now: float) -> None:
        """Count the periodic ticks, seconds and alarms up to `now`; raise IRQ8 for an enabled one."""
        before, self._seen = self._seen, max(self._seen, now)
        hz = self._periodic_hz()
        interrupting = hz if self.ram[0x0B] & 0x40 else 0.0
        if interrupting != self._tick_hz:  # the rate changed or PIE went on/off: ticks from the next edge
            self._tick_hz = interrupting
            self._tick_at = (math.floor(now * hz) + 1) / hz if interrupting else math.inf
        if interrupting:
            # Each periodic interrupt is owed until signalled: one whose handler came late (a slice of
            # emulation is coarser than 1/8192 s) is still delivered, so a second of virtual time brings
            # `hz` interrupts, as the PIT's ticks do; the ones after the previous was acknowledged only.
            if now >= self._tick_at and not self.flags & 0x80:
                self.flags |= 0x40
                self._tick_at += 1 / interrupting
                if self._tick_at <= now - MAX_OWED_SECONDS:  # far behind (IRQ8 masked, IF=0): drop them
                    self._tick_at = (math.floor(now * interrupting) + 1) / interrupting
        elif now > before and hz and math.floor(now * hz) > math.floor(before * hz):
            self.flags |= 0x40
        if now > before and not self.ram[0x0B] & 0x80:
            start = self.seconds(before)
            if math.floor(self.seconds(now)) > math.floor(start):
                self.flags |= 0x10
                if self._alarm_matches():
                    self.flags |= 0x20
        enabled = self.flags & self.ram[0x0B] & 0x70
        if enabled and not self.flags & 0x80:
            self.flags |= 0x80
            if self.raise_irq:
                self.raise_irq(8)
        self._schedule(now)

    def _alarm_matches(self) -> bool:
        fields = self._fields(self.now())
        for index in ALARM_REGISTERS:
            alarm = self.ram[index]
            if alarm & 0xC0 == 0xC0:
                continue  # "don't care"
            if self._decode(index - 1, alarm) != fields[index - 1]:
                return False
        return True

    def _schedule(self, now: float) -> None:
        """When the machine should call update() next: the next event whose interrupt is enabled."""
        b = self.ram[0x0B]
        when = math.inf
        if self.flags & 0x80:
            self.next_irq8 = math.inf  # IRQ8 stays up until C is read
            return
        if b & 0x40:
            when = self._tick_at
        if b & 0x30 and not b & 0x80:
            wall = self.seconds(now)
            when = min(when, now + (math.floor(wall) + 1 - wall))
        self.next_irq8 = when
        if self.on_schedule is not None and when != math.inf:
            self.on_schedule(when)

    # -- ports -----------------------------------------------------------------------
    def read(self) -> int:
        i = self.index
        if i in TIME_REGISTERS:
            fields = self._fields(self.now())
            return self._encode(i, fields[i]) if i != 0x32 else bcd(fields[i])
        if i == 0x0A:
            wall = self.seconds(self.clock.live())
            uip = 0x80 if wall - math.floor(wall) >= 1 - UIP_SECONDS else 0
            return (self.ram[0x0A] & 0x7F) | uip
        if i == 0x0C:
            now = self.clock.live()
            self.update(now)
            value, self.flags = self.flags, 0
            self.update(now)  # a periodic interrupt still owed is signalled at once, else the next is scheduled
            return value
        return self.ram[i]

    def write(self, value: int) -> None:
        i = self.index
        if i in TIME_REGISTERS:
            t = self.now()
            fields = self._fields(t)
            fields[i] = self._decode(i, value) if i != 0x32 else from_bcd(value)
            year = fields[0x32] * 100 + fields[0x09]
            new = time.mktime((year, fields[0x08], fields[0x07], fields[0x04], fields[0x02], fields[0x00],
                               0, 0, t.tm_isdst))
            self.offset += new - time.mktime(t)
            return
        if i in (0x0C, 0x0D):
            return  # read-only
        if i == 0x0A:
            value = (value & 0x7F)
        self.ram[i] = value
        if i in (0x0A, 0x0B):
            self.update(self.clock.now)
