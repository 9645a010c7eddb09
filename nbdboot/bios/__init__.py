"""BIOS services, one module per interrupt, behind one dispatcher.

Each service runs inside the trap of its ROM stub: the caller's registers are
live, its FLAGS word sits in the interrupt frame (see machine/cpu.py), and the
stub's `iret` returns. Vectors without a service (int 1Ch, int 4Ah...) are
plain `iret`s.

A trap's service is the callable a module gives for its interrupt (`int13`,
`int15`...): a dispatcher by AH. Those of int 13h, 15h and 1Ah give their
functions' returns the one convention of bios/service.py (status -> AH, CF and,
for int 13h, the BDA status; int 15h's is a service.Dispatcher); int 16h, 11h
and 12h have no status; int 10h's dispatcher keeps its own convention, and
serves as well: any zero-argument callable can be a vector's service.
"""

from __future__ import annotations

from nbdboot.bios.boot import Boot
from nbdboot.bios.int13 import Int13
from nbdboot.bios.keyboard import Keyboard
from nbdboot.bios.serial import Serial
from nbdboot.bios.system import System
from nbdboot.bios.timer import Timer
from nbdboot.bios.video import Video
from nbdboot.machine import rom


class Bios:
    def __init__(self, machine):
        self.machine = machine
        self.video = Video(machine)
        self.keyboard = Keyboard(machine)
        self.disk = Int13(machine)
        self.system = System(machine)
        self.timer = Timer(machine)
        self.serial = Serial(machine)
        self.boot = Boot(machine, self)
        services = {
            0x10: self.video.int10,
            0x11: self.system.int11,
            0x12: self.system.int12,
            0x13: self.disk.int13,
            0x14: self.serial.int14,
            0x15: self.system.int15,
            0x16: self.keyboard.int16,
            0x18: self.boot.int18,
            0x19: self.boot.int19,
            0x1A: self.timer.int1a,
            0x40: self.disk.int13,  # floppy services as relocated by a hard disk BIOS
        }
        for vector in range(256):
            machine.add_trap(rom.stub(vector), services.get(vector))
        machine.add_trap(rom.IRQ0, self.timer.irq0)
        machine.add_trap(rom.IRQ1_TRAP, self.keyboard.irq1)
        machine.add_trap(rom.IRQ12_TRAP, self.system.irq12)
        machine.add_trap(rom.POST_ENTRY, self.boot.post_entry)

    def reset(self) -> None:
        """The machine was reset: services forget calls in progress (POST follows)."""
        self.system.reset()

    def post(self, boot_drive: int) -> None:
        self.boot.post(boot_drive)
        self.video.post()
        self.serial.post()
