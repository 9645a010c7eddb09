"""Time: the IRQ0 tick (trap inside the ROM's int 08h path) and int 1Ah.

The ROM handler traps here first, then calls int 1Ch through the IVT and sends
the EOI itself, so guests that chain int 08h or hook int 1Ch (SYSLINUX counts
jiffies there) see a PC's sequence. The RTC follows the virtual clock. int 1Ah's
functions follow bios/service.py; each docstring is its register contract.
"""

from __future__ import annotations

from nbdboot.bios.bda import Bda
from nbdboot.bios.pcibios import int1a_pci
from nbdboot.bios.service import UNSUPPORTED, finish
from nbdboot.machine.devices.cmos import bcd

TICKS_PER_DAY = 0x1800B0


class Timer:
    def __init__(self, machine):
        self.m = machine
        self.bda = Bda(machine.cpu)
        self.ticks = 0
        self.functions = {
            0x00: self.get_ticks, 0x01: self.set_ticks, 0x02: self.get_rtc_time, 0x04: self.get_rtc_date,
            0x03: self.set_rtc, 0x05: self.set_rtc, 0x06: self.set_rtc, 0x07: self.set_rtc,
        }

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
        """The dispatcher: PCI BIOS calls (B1xxh) answer for themselves (bios/pcibios.py); the rest go to
        the function for AH, whose return (bios/service.py) sets AH and CF. int 1Ah has no BDA status."""
        cpu = self.m.cpu
        ah = cpu.get("ah")
        if ah == 0xB1:
            int1a_pci(self.m)
            return
        function = self.functions.get(ah)
        # includes BB00h: no TCG/TPM, EAX stays non-zero
        finish(cpu, function() if function is not None else UNSUPPORTED)

    def get_ticks(self):
        """INT 1A,00 - Read the tick count. Return: CX:DX ticks since midnight (40:6C), AL the midnight
        flag (40:70), which is then cleared; CF clear (SeaBIOS's handle_1a00)."""
        cpu = self.m.cpu
        count = self.bda.timer_counter
        cpu.set("cx", count >> 16)
        cpu.set("dx", count & 0xFFFF)
        cpu.set("al", self.bda.timer_rollover)
        self.bda.timer_rollover = 0
        return None

    def set_ticks(self):
        """INT 1A,01 - Set the tick count. Entry: CX:DX ticks. Return: the midnight flag cleared; CF clear."""
        cpu = self.m.cpu
        self.bda.timer_counter = (cpu.get("cx") << 16) | cpu.get("dx")
        self.bda.timer_rollover = 0
        return None

    def get_rtc_time(self):
        """INT 1A,02 - Read the RTC time. Return: CH hours, CL minutes, DH seconds (BCD), DL 0 (no daylight
        saving); CF clear, AH unchanged. The RTC follows the virtual clock."""
        cpu = self.m.cpu
        t = self.m.cmos.now()
        cpu.set("ch", bcd(t.tm_hour))
        cpu.set("cl", bcd(t.tm_min))
        cpu.set("dh", bcd(t.tm_sec))
        cpu.set("dl", 0)
        return None

    def get_rtc_date(self):
        """INT 1A,04 - Read the RTC date. Return: CH century, CL year, DH month, DL day (BCD); CF clear,
        AH unchanged."""
        cpu = self.m.cpu
        t = self.m.cmos.now()
        cpu.set("ch", bcd(t.tm_year // 100))
        cpu.set("cl", bcd(t.tm_year % 100))
        cpu.set("dh", bcd(t.tm_mon))
        cpu.set("dl", bcd(t.tm_mday))
        return None

    def set_rtc(self):
        """INT 1A,03/05/06/07 - Set the RTC time or date, set or reset the alarm. Entry: CX/DX as the
        function says. Accepted and ignored (the RTC follows the virtual clock): CF clear, AH unchanged."""
        return None
