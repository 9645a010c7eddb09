"""The I/O devices boot code pokes, behind one IN and one OUT hook.

Only what loaders and DOS touch: the 8259 pair (IRR/ISR/IMR, EOI, ICW
sequences), the 8254 (channel 0 rate drives IRQ0, channel 2 with port 61h for
GRUB's TSC calibration), the 8042 (A20 and output port), port 92h, the CMOS
RTC, the VGA CRTC cursor registers and the E9h debug console. A20 is always
on in Unicorn, so every A20 switch reads back "enabled".
"""

from __future__ import annotations

import time

PIT_HZ = 1193182


def bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


class Pic:
    """Two cascaded 8259s seen as 16 lines; vectors from ICW2 (08h and 70h at boot)."""

    def __init__(self):
        self.irr = 0
        self.isr = 0
        self.imr = 0  # POST leaves every line unmasked; the IRQs we raise have handlers
        self.base = [0x08, 0x70]
        self._icw_step = [0, 0]
        self._read_isr = [False, False]

    def raise_irq(self, irq: int) -> None:
        self.irr |= 1 << irq

    def pending(self) -> int | None:
        """The IRQ line the CPU would take now, or None."""
        ready = self.irr & ~self.imr & 0xFFFF
        if not ready:
            return None
        for irq in (0, 1, 8, 9, 10, 11, 12, 13, 14, 15, 3, 4, 5, 6, 7):  # IRQ2 cascades
            if ready & (1 << irq):
                if self.isr & ((1 << (irq + 1)) - 1 if irq < 8 else 0x0007 | ((1 << (irq + 1)) - 1) & 0xFF00):
                    return None  # a higher or equal priority IRQ is in service
                return irq
        return None

    def acknowledge(self, irq: int) -> int:
        self.irr &= ~(1 << irq)
        self.isr |= 1 << irq
        if irq >= 8:
            self.isr |= 1 << 2
        return (self.base[0] + irq) if irq < 8 else (self.base[1] + irq - 8)

    def out(self, chip: int, port_low: int, value: int) -> None:
        shift = 8 * chip
        if port_low == 0:
            if value & 0x10:  # ICW1
                self._icw_step[chip] = 2
                self.imr &= ~(0xFF << shift)
                self.isr &= ~(0xFF << shift)
                return
            if value & 0x08:  # OCW3
                if value & 0x02:
                    self._read_isr[chip] = bool(value & 1)
                return
            if value & 0x20:  # OCW2 EOI
                if value & 0x40:
                    self.isr &= ~(1 << ((value & 7) + shift))
                else:
                    chip_isr = (self.isr >> shift) & 0xFF
                    if chip_isr:
                        lowest = (chip_isr & -chip_isr).bit_length() - 1
                        self.isr &= ~(1 << (lowest + shift))
            return
        step = self._icw_step[chip]
        if step == 2:
            self.base[chip] = value & 0xF8
            self._icw_step[chip] = 3
        elif step == 3:
            self._icw_step[chip] = 4
        elif step == 4:
            self._icw_step[chip] = 0
        else:
            self.imr = (self.imr & ~(0xFF << shift)) | (value << shift)

    def read(self, chip: int, port_low: int) -> int:
        shift = 8 * chip
        if port_low == 1:
            return (self.imr >> shift) & 0xFF
        return ((self.isr if self._read_isr[chip] else self.irr) >> shift) & 0xFF


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


class Keyboard8042:
    def __init__(self):
        self.output: list[int] = []
        self.command = None
        self.output_port = 0x03  # A20 on, no reset
        self.command_byte = 0x45

    def status(self) -> int:
        return 0x14 | (1 if self.output else 0)  # system flag, keyboard unlocked

    def read_data(self) -> int:
        if self.output:
            value = self.output[0]
            if len(self.output) > 1:
                self.output.pop(0)
            return value
        return 0

    def write_command(self, value: int) -> None:
        if value in (0xD1, 0x60):
            self.command = value
        elif value == 0xD0:
            self.output = [self.output_port]
        elif value == 0x20:
            self.output = [self.command_byte]
        elif value == 0xAA:
            self.output = [0x55]
        elif value == 0xAB:
            self.output = [0x00]
        elif value in (0xDD, 0xDF):
            self.output_port |= 0x02
        # ADh/AEh (disable/enable keyboard), FFh (pulse) are accepted silently

    def write_data(self, value: int) -> None:
        if self.command == 0xD1:
            self.output_port = value | 0x02  # A20 cannot be turned off in Unicorn
        elif self.command == 0x60:
            self.command_byte = value
        else:
            self.output = [0xFA]  # ACK whatever the keyboard is told
        self.command = None


class Ports:
    """Port dispatch for the machine's IN/OUT hooks."""

    def __init__(self, clock, pic: Pic, pit: Pit, cmos: Cmos, debug_out=None):
        self.clock = clock
        self.pic, self.pit, self.cmos = pic, pit, cmos
        self.kbc = Keyboard8042()
        self.port61 = 0
        self.port92 = 0x02
        self.crtc_index = 0
        self.crtc = bytearray(32)
        self.debug_out = debug_out  # callable(bytes) for port E9h
        self.debug = bytearray()
        self._retrace = 0

    def inb(self, port: int) -> int:
        if port in (0x20, 0x21):
            return self.pic.read(0, port & 1)
        if port in (0xA0, 0xA1):
            return self.pic.read(1, port & 1)
        if 0x40 <= port <= 0x42:
            return self.pit.read_data(port - 0x40)
        if port == 0x61:
            refresh = int(self.clock.live() * 66_666) & 1  # bit 4 toggles every 15 us
            return (self.port61 & 0x0F) | (refresh << 4) | (0x20 if self.pit.out2() else 0)
        if port == 0x60:
            return self.kbc.read_data()
        if port == 0x64:
            return self.kbc.status()
        if port == 0x92:
            return self.port92 | 0x02
        if port == 0x71:
            return self.cmos.read()
        if port == 0x3D5:
            return self.crtc[self.crtc_index & 31]
        if port == 0x3D4:
            return self.crtc_index
        if port == 0x3DA:
            self._retrace ^= 0x09
            return self._retrace
        if port == 0xE9:
            return 0xE9
        return 0xFF

    def outb(self, port: int, value: int) -> None:
        value &= 0xFF
        if port in (0x20, 0x21):
            self.pic.out(0, port & 1, value)
        elif port in (0xA0, 0xA1):
            self.pic.out(1, port & 1, value)
        elif 0x40 <= port <= 0x42:
            self.pit.write_data(port - 0x40, value)
        elif port == 0x43:
            self.pit.write_control(value)
        elif port == 0x61:
            gate = bool(value & 1)
            if gate and not self.pit.gate2:
                self.pit.start[2] = self.clock.live()
            self.pit.gate2 = gate
            self.port61 = value & 0x0F
        elif port == 0x60:
            self.kbc.write_data(value)
        elif port == 0x64:
            self.kbc.write_command(value)
        elif port == 0x92:
            self.port92 = value | 0x02
        elif port == 0x70:
            self.cmos.index = value & 0x7F
        elif port == 0x71:
            self.cmos.write(value)
        elif port == 0x3D4:
            self.crtc_index = value
        elif port == 0x3D5:
            self.crtc[self.crtc_index & 31] = value
        elif port == 0xE9:
            self.debug.append(value)
            if self.debug_out:
                self.debug_out(bytes((value,)))
