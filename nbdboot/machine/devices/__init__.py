"""The PC's I/O devices, one module each; every device registers its own ports
on the machine's PortBus (`attach(bus)`), as v86's and QEMU's devices do.

What is modelled is what boot code pokes: the 8259 pair, the 8254, the 8042 with
its PS/2 keyboard and mouse, system control ports A (92h) and B (61h), the CMOS
RTC, PCI configuration mechanism #1 with a host and an ISA bridge, the Bochs
shutdown port, the VGA (registers,
planes, VBE framebuffer), the 16550A UARTs, and the E9h debug
console.
"""

from nbdboot.machine.devices.cmos import Cmos, bcd
from nbdboot.machine.devices.debugcon import DebugConsole
from nbdboot.machine.devices.kbc import Keyboard8042
from nbdboot.machine.devices.mouse import Ps2Mouse
from nbdboot.machine.devices.pci import PciBus
from nbdboot.machine.devices.pic import Pic
from nbdboot.machine.devices.pit import PIT_HZ, Pit
from nbdboot.machine.devices.power import PowerPorts
from nbdboot.machine.devices.sysctl import SystemControlA, SystemControlB
from nbdboot.machine.devices.uart import Uart16550
from nbdboot.machine.devices.vga import Vga

__all__ = ["Cmos", "DebugConsole", "Keyboard8042", "PIT_HZ", "PciBus", "Pic", "Pit", "PowerPorts", "Ps2Mouse",
           "SystemControlA", "SystemControlB", "Uart16550", "Vga", "bcd"]
