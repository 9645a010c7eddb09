"""Lay out a test disk: a NASM boot program at LBA 0, then data sectors whose content follows from their LBA.

usage: mkdata.py PROGRAM.bin OUT.img SECTORS [--zero]

Data sectors (every LBA the program does not cover) hold 128 little-endian dwords: dword 0 is the LBA, dword i
is (LBA * 9E3779B1h + i * 85EBCA77h) mod 2**32, so a sector read from the wrong place or into the wrong offset
changes the checksum. --zero leaves the data area sparse (the bench sectors only count bytes).
The guest and tests/support/qemuref.py share one checksum over dwords: a += d; b += a (mod 2**32); reported as b.
"""

from __future__ import annotations

import os
import struct
import sys

SECTOR = 512


def sector_data(lba: int) -> bytes:
    words = [lba & 0xFFFFFFFF]
    words += [(lba * 0x9E3779B1 + i * 0x85EBCA77) & 0xFFFFFFFF for i in range(1, 128)]
    return struct.pack("<128I", *words)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    program_path, out_path, sectors = argv[0], argv[1], int(argv[2])
    zero = "--zero" in argv[3:]
    program = open(program_path, "rb").read()
    first_data = -(-len(program) // SECTOR)
    if first_data > sectors:
        print(f"mkdata: {program_path} is larger than {sectors} sectors", file=sys.stderr)
        return 2
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as out:
        out.write(program.ljust(first_data * SECTOR, b"\0"))
        if zero:
            out.truncate(sectors * SECTOR)
        else:
            for lba in range(first_data, sectors):
                out.write(sector_data(lba))
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
