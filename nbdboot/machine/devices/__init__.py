"""The PC's I/O devices, one module each; every device registers its own ports
on the machine's PortBus (`attach(bus)`), as v86's and QEMU's devices do.

What is modelled is what boot code pokes: the 8259 pair, the 8254, the 8042,
system control ports A (92h) and B (61h), the CMOS RTC, the VGA's CRTC cursor
registers and status, and the E9h debug console.
"""

from nbdboot.machine.devices.cmos import Cmos, bcd
from nbdboot.machine.devices.debugcon import DebugConsole
from nbdboot.machine.devices.kbc import Keyboard8042
from nbdboot.machine.devices.pic import Pic
from nbdboot.machine.devices.pit import PIT_HZ, Pit
from nbdboot.machine.devices.sysctl import SystemControlA, SystemControlB
from nbdboot.machine.devices.vga import VgaPorts

__all__ = ["Cmos", "DebugConsole", "Keyboard8042", "PIT_HZ", "Pic", "Pit", "SystemControlA",
           "SystemControlB", "VgaPorts", "bcd"]
