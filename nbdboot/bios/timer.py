"""Time: the IRQ0 tick (trap inside the ROM's int 08h path) and int 1Ah.

The ROM handler traps here first, then calls int 1Ch through the IVT and sends
the EOI itself, so guests that chain int 08h or hook int 1Ch (SYSLINUX counts
jiffies there) see a PC's sequence. The RTC follows the virtual clock.
"""

from __future__ import annotations

from nbdboot.bios.bda import Bda
from nbdboot.bios.pcibios import int1a_pci
from nbdboot.machine.cpu import FLAG_CF
from nbdboot.machine.devices.cmos import bcd

TICKS_PER_DAY = 0x1800B0


class Timer:
    def __init__(self, machine):
        self.m = machine
        self.bda = Bda(machine.cpu)
        self.ticks = 0
        self.midnight_base = 0

    def irq0(self) -> None:
        bda = self.bda
        self.ticks += 1
        count = bda.timer_counter + 1
        if count >= TICKS_PER_DAY:
            count = 0
            bda.timer_rollover = 1
        bda.timer_counter = count
        motor = bda.floppy_motor_counter
        if motor:
            bda.floppy_motor_counter = motor - 1
            if motor == 1:
                bda.floppy_motor_status &= 0xF0
        self.m.bios.keyboard.polls = 0

    def int1a(self) -> None:
        cpu = self.m.cpu
        ah = cpu.get("ah")
        if ah == 0xB1:
            int1a_pci(self.m)
            return
        ok = True
        if ah == 0x00:
            count = self.bda.timer_counter
            cpu.set("cx", count >> 16)
            cpu.set("dx", count & 0xFFFF)
            cpu.set("al", self.bda.timer_rollover)
            self.bda.timer_rollover = 0
        elif ah == 0x01:
            self.bda.timer_counter = (cpu.get("cx") << 16) | cpu.get("dx")
            self.bda.timer_rollover = 0
        elif ah == 0x02:
            t = self.m.cmos.now()
            cpu.set("ch", bcd(t.tm_hour))
            cpu.set("cl", bcd(t.tm_min))
            cpu.set("dh", bcd(t.tm_sec))
            cpu.set("dl", 0)
        elif ah == 0x04:
            t = self.m.cmos.now()
            cpu.set("ch", bcd(t.tm_year // 100))
            cpu.set("cl", bcd(t.tm_year % 100))
            cpu.set("dh", bcd(t.tm_mon))
            cpu.set("dl", bcd(t.tm_mday))
        elif ah in (0x03, 0x05, 0x06, 0x07):
            pass  # setting the RTC or its alarm is accepted and ignored
        else:
            ok = False  # includes BB00h: no TCG/TPM, EAX stays non-zero
            cpu.set("ah", 0x86)
        if ah in (0x02, 0x03, 0x04, 0x05, 0x06, 0x07) or not ok:
            cpu.set_frame_flags(0 if ok else FLAG_CF, FLAG_CF if ok else 0)
