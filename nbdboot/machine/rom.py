"""The BIOS ROM image and the addresses the machine needs from it.

The offsets mirror the `times` placements in firmware/bios.asm; a test checks
that the committed image has the expected code at each of them.
"""

from __future__ import annotations

import os

from nbdboot.machine.memmap import ROM_BASE, ROM_SEGMENT, ROM_SIZE  # noqa: F401

STUB_STRIDE = 4           # F000:4n holds `int n; iret; nop`
IRQ0 = 0x0400             # timer: trap int 08h, int 1Ch, EOI
IRQ1 = 0x0410             # keyboard: jmp to its body
IRQ1_BODY = 0x0480        # read port 60h, int 15h AH=4Fh (the intercept), then the trap, EOI
IRQ1_TRAP = 0x0490        # its int 09h: the scan code in AL
IRQ_MASTER_DEFAULT = 0x0420
IRQ_SLAVE_DEFAULT = 0x0430
BOOT_FAILED = 0x0440
IRQ12 = 0x0450            # PS/2 mouse: save registers, trap int 74h, far call to the int 15h C207h handler, EOI
IRQ12_TRAP = 0x0453       # its int 74h, after pusha, push ds, push es
MOUSE_HANDLER = 0x04F0    # the handler's far pointer
POST_ENTRY = 0xE05B
FDPT = 0xE401
CONFIG_TABLE = 0xE6F5
DISKETTE_PARAMS = 0xEFC7
FONT_8X8 = 0xFA6E
FONT_8X8_FULL = 0xB800     # all 256 glyphs; int 1Fh points at +400h
FONT_8X16 = 0xC000
FONT_8X14 = 0xD000
RESET_VECTOR = 0xFFF0


def stub(vector: int) -> int:
    """Offset in the ROM segment of the stub for `vector`."""
    return vector * STUB_STRIDE


def load_image() -> bytes:
    # Beside the nbdboot.firmware package rather than through importlib.resources,
    # whose imports (pathlib, tempfile, zipfile) every start would pay for.
    import nbdboot.firmware
    with open(os.path.join(os.path.dirname(nbdboot.firmware.__file__), "bios.bin"), "rb") as f:
        data = f.read()
    if len(data) != ROM_SIZE:
        raise RuntimeError(f"bios.bin is {len(data)} bytes, expected {ROM_SIZE}")
    return data
