"""The PC nbdboot boots: the machine (nbdboot.machine) with its BIOS (nbdboot.bios) in the ROM.

The machine does not import the BIOS: the BIOS is built on a machine and serves its traps, so the
machine takes it as its firmware, and this is where the two meet.
"""

from __future__ import annotations

from nbdboot.bios import Bios
from nbdboot.machine.machine import DEFAULT_MEMORY_MB, Machine


class PC(Machine):
    def __init__(self, memory_mb: int = DEFAULT_MEMORY_MB, debug_out=None):
        super().__init__(Bios, memory_mb, debug_out)
