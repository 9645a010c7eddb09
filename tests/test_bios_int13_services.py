"""int 13h functions run alone against a POSTed machine's registers (bios_bench): one table row per call,
entry registers -> exit registers, CF, IF and the BDA status (40:41 floppies, 40:74 hard disks)."""

from __future__ import annotations

import struct

import pytest

from nbdboot.disk.file import FileDevice
from support.bios_bench import call, check, machine_at_rest, opposite_flags

HD_BYTES = 16 * 1024 * 1024   # 255 heads, 63 sectors: 2 cylinders
HD_SECTORS = HD_BYTES // 512
FLOPPY_BYTES = 1440 * 1024
BUFFER = 0x8000
DAP = 0x6000


def sector(tag: bytes, lba: int) -> bytes:
    return (tag + struct.pack("<I", lba)).ljust(512, b"\0")


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("int13")
    hd, floppy = tmp / "hd.img", tmp / "floppy.img"
    with open(hd, "wb") as f:
        f.truncate(HD_BYTES)
        for lba in (0, 1, 63, HD_SECTORS - 1):
            f.seek(lba * 512)
            f.write(sector(b"HD", lba))
    floppy.write_bytes(b"".join(sector(b"FD", lba) for lba in range(FLOPPY_BYTES // 512)))
    devices = [FileDevice(hd), FileDevice(floppy, read_only=True)]

    def attach(m):
        m.bios.disk.add_firmware_drive(0x00, devices[1])
        m.bios.disk.add_firmware_drive(0x80, devices[0])

    yield machine_at_rest(0x80, attach)
    for device in devices:
        device.close()


def dap(count: int, lba: int, segment: int = 0, offset: int = BUFFER) -> bytes:
    return struct.pack("<BBHHHQ", 0x10, 0, count, offset, segment, lba)


# The rows run in order on one machine: "01 last status" rows read the call before them.
# (id, entry registers, memory before, expected exit: registers, "cf"/"if" bits, "bda.field", "mem:ADDR+SIZE")
CALLS = [
    ("00 reset hd", dict(ax=0x0000, dx=0x0080), {},
     dict(ah=0x00, cf=0, **{"if": 1}, **{"bda.disk_last_status": 0})),
    ("02 read chs c0 h0 s1", dict(ax=0x0201, cx=0x0001, dx=0x0080, bx=BUFFER), {},
     dict(ax=0x0001, cf=0, **{"mem:8000+6": sector(b"HD", 0)[:6]})),
    ("02 read chs c0 h1 s1 = lba 63", dict(ax=0x0201, cx=0x0001, dx=0x0180, bx=BUFFER), {},
     dict(ax=0x0001, cf=0, **{"mem:8000+6": sector(b"HD", 63)[:6]})),
    ("02 read floppy c0 h1 s1 = lba 18", dict(ax=0x0201, cx=0x0001, dx=0x0100, bx=BUFFER), {},
     dict(ax=0x0001, cf=0, **{"bda.floppy_last_status": 0, "mem:8000+6": sector(b"FD", 18)[:6]})),
    ("02 sector 0 is invalid", dict(ax=0x0201, cx=0x0000, dx=0x0080, bx=BUFFER), {},
     dict(ax=0x0101, cf=1, **{"if": 1}, **{"bda.disk_last_status": 0x01})),
    ("02 floppy head 2 is invalid", dict(ax=0x0201, cx=0x0001, dx=0x0200, bx=BUFFER), {},
     dict(ah=0x01, cf=1, **{"bda.floppy_last_status": 0x01})),
    ("01 last status after a failure", dict(ax=0x0100, dx=0x0000), {},
     dict(ah=0x01, cf=1)),
    ("02 count 129 is invalid", dict(ax=0x0281, cx=0x0001, dx=0x0080, bx=BUFFER), {},
     dict(ah=0x01, cf=1)),
    ("03 write to a read-only floppy", dict(ax=0x0301, cx=0x0001, dx=0x0000, bx=BUFFER), {},
     dict(ax=0x0300, cf=1, **{"bda.floppy_last_status": 0x03})),
    ("04 verify", dict(ax=0x0401, cx=0x0001, dx=0x0080), {}, dict(ah=0x00, cf=0)),
    ("08 hd parameters", dict(ax=0x0800, dx=0x0080), {},
     dict(ax=0x0000, cx=0x013F, dx=0xFE01, cf=0)),
    ("08 floppy parameters", dict(ax=0x0800, dx=0x0000), {},
     dict(ax=0x0000, bx=0x0004, cx=0x4F12, dx=0x0101, cf=0)),
    ("08 absent drive still counts", dict(ax=0x0800, dx=0x0081), {},
     dict(ah=0x01, dl=0x01, cf=1, **{"bda.disk_last_status": 0x01})),
    ("15 hd type and size", dict(ax=0x1500, dx=0x0080), {},
     dict(ah=0x03, cx=HD_SECTORS >> 16, dx=HD_SECTORS & 0xFFFF, cf=0, **{"bda.disk_last_status": 0})),
    ("01 last status after 15h", dict(ax=0x0100, dx=0x0080), {}, dict(ah=0x03, cf=0)),
    ("15 floppy without change line", dict(ax=0x1500, dx=0x0000), {}, dict(ah=0x01, cf=0)),
    ("15 absent hd", dict(ax=0x1500, dx=0x0085), {}, dict(ah=0x00, cf=0)),
    ("16 floppy changed", dict(ax=0x1600, dx=0x0000), {},
     dict(ah=0x06, cf=1, **{"bda.floppy_last_status": 0x06})),
    ("41 extensions", dict(ax=0x4100, bx=0x55AA, dx=0x0080), {},
     dict(ah=0x30, bx=0xAA55, cx=0x000D, cf=0)),
    ("41 without signature", dict(ax=0x4100, bx=0x1234, dx=0x0080), {}, dict(ah=0x01, bx=0x1234, cf=1)),
    ("41 floppy", dict(ax=0x4100, bx=0x55AA, dx=0x0000), {}, dict(ah=0x01, cf=1)),
    ("42 extended read of the last sector", dict(ax=0x4200, dx=0x0080, si=DAP), {DAP: dap(1, HD_SECTORS - 1)},
     dict(ah=0x00, cf=0, **{"mem:8000+6": sector(b"HD", HD_SECTORS - 1)[:6]})),
    ("42 past the end zeroes the count", dict(ax=0x4200, dx=0x0080, si=DAP), {DAP: dap(2, HD_SECTORS - 1)},
     dict(ah=0x04, cf=1, **{"bda.disk_last_status": 0x04, "mem:6002+2": b"\0\0"})),
    ("42 count 80h is invalid", dict(ax=0x4200, dx=0x0080, si=DAP), {DAP: dap(0x80, 0)}, dict(ah=0x01, cf=1)),
    ("47 seek", dict(ax=0x4700, dx=0x0080, si=DAP), {DAP: dap(1, 5)}, dict(ah=0x00, cf=0)),
    ("48 extended parameters", dict(ax=0x4800, dx=0x0080, si=DAP), {DAP: struct.pack("<H", 26)},
     dict(ah=0x00, cf=0, **{"mem:6000+1a": struct.pack("<HHIIIQH", 26, 3, 2, 255, 63, HD_SECTORS, 512)})),
    ("48 buffer too small", dict(ax=0x4800, dx=0x0080, si=DAP), {DAP: struct.pack("<H", 25)},
     dict(ah=0x01, cf=1)),
    ("4B not a CD", dict(ax=0x4B01, dx=0x0080, si=DAP), {}, dict(ah=0x01, cf=1)),
    ("50 no such function", dict(ax=0x5000, dx=0x0080), {},
     dict(ah=0x01, cf=1, **{"if": 1}, **{"bda.disk_last_status": 0x01})),
    ("00 reset absent floppy", dict(ax=0x0000, dx=0x0001), {},
     dict(ah=0x01, cf=1, **{"bda.floppy_last_status": 0x01})),
]


@pytest.mark.parametrize("entry, memory, expected", [row[1:] for row in CALLS], ids=[row[0] for row in CALLS])
def test_int13_function(machine, entry, memory, expected):
    # CF the opposite of the expected and IF clear on entry: the exit's CF and IF are the dispatcher's
    state = call(machine, machine.bios.disk.int13, entry, flags=opposite_flags(expected), memory=memory)
    check(machine, state, expected)


def test_int13_calls_keep_registers_outside_their_contract(machine):
    state = call(machine, machine.bios.disk.int13, dict(ax=0x0401, cx=0x0001, dx=0x0080, bx=0x5555, si=0x6666,
                                                       di=0x7777, bp=0x8888, es=0x1000, ds=0x2000))
    check(machine, state, dict(ax=0x0001, bx=0x5555, cx=0x0001, dx=0x0080, si=0x6666, di=0x7777, bp=0x8888,
                               es=0x1000, ds=0x2000, cf=0))
