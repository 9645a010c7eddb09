"""The PC's physical memory map: every fixed address the machine and the BIOS use, by name.

Nothing here touches memory; `machine/cpu.py` maps RAM from 0 to the configured size and open bus above it.
"""

from __future__ import annotations

IVT = 0x00000               # 256 real-mode vectors of 4 bytes
BDA = 0x00400               # BIOS data area (bios/bda.py), segment 0040h
BDA_SEGMENT = 0x0040
BOOT_SECTOR = 0x07C00       # where int 19h loads sector 0 (0000:7C00)
CONVENTIONAL_TOP = 0x9FC00  # conventional memory ends where the EBDA starts (639 KiB)
EBDA = CONVENTIONAL_TOP     # extended BIOS data area, 1 KiB
EBDA_SEGMENT = EBDA >> 4
EBDA_SIZE = 0x400
VGA_WINDOW = 0xA0000        # start of the legacy video memory window
VIDEO_TEXT = 0xB8000        # colour text screen, B800:0000
VIDEO_TEXT_SEGMENT = VIDEO_TEXT >> 4
VIDEO_TEXT_SIZE = 0x8000    # 4 pages of 80x25 cells
ROM_BASE = 0xF0000          # our BIOS ROM image (machine/rom.py), F000:0000
ROM_SEGMENT = ROM_BASE >> 4
ROM_SIZE = 0x10000
EXTENDED_BASE = 0x100000    # extended memory (A20 is always on)
ADDRESS_SPACE_END = 1 << 32  # open bus from the end of RAM to here
