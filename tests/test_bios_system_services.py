"""int 11h, 12h and 15h functions run alone against a POSTed machine's registers (bios_bench): one table row per
call, entry registers -> exit registers and CF. Rows run in order on one machine (APM connects, then disconnects)."""

from __future__ import annotations

import struct

import pytest

from nbdboot.machine import rom
from nbdboot.machine.memmap import CONVENTIONAL_TOP, EBDA_SEGMENT, EXTENDED_BASE
from support.bios_bench import call, check, machine_at_rest, opposite_flags

MEMORY_MB = 2
SMAP = 0x534D4150
GDT = 0x6000


def descriptor(base: int) -> bytes:
    return struct.pack("<HHBBBB", 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, 0x93, 0, base >> 24)


MOVE_GDT = bytes(16) + descriptor(0x9000) + descriptor(EXTENDED_BASE + 0x1000) + bytes(16)


@pytest.fixture(scope="module")
def machine():
    return machine_at_rest(memory_mb=MEMORY_MB)


# (id, entry registers, memory before, expected exit: registers, "cf" bit, "mem:ADDR+SIZE")
CALLS = [
    ("2401 enable A20", dict(ax=0x2401), {}, dict(ax=0x0001, cf=0)),
    ("2402 A20 is on", dict(ax=0x2402), {}, dict(ax=0x0001, cf=0)),
    ("2403 A20 support", dict(ax=0x2403), {}, dict(ax=0x0003, bx=0x0003, cf=0)),
    ("2404 is not a function", dict(ax=0x2404), {}, dict(ax=0x8604, cf=1)),
    ("4F keyboard intercept", dict(ax=0x4F1C), {}, dict(ax=0x4F1C, cf=1)),
    ("86 wait of 0", dict(ax=0x8600, cx=0, dx=0), {}, dict(ah=0x00, cf=0)),
    ("87 block move to 1 MiB", dict(ax=0x8700, cx=4, si=GDT), {GDT: MOVE_GDT, 0x9000: b"MOVED-8!"},
     dict(ah=0x00, cf=0, **{"mem:101000+8": b"MOVED-8!"})),
    ("87 longer than 64K", dict(ax=0x8700, cx=0x8001, si=GDT), {GDT: MOVE_GDT}, dict(ah=0x02, cf=1)),
    ("88 extended size", dict(ax=0x8800), {}, dict(ax=MEMORY_MB * 1024, cf=0)),
    ("90 device busy", dict(ax=0x9000), {}, dict(ax=0x0000, cf=0)),
    ("C0 configuration table", dict(ax=0xC000), {}, dict(ah=0x00, es=rom.ROM_SEGMENT, bx=rom.CONFIG_TABLE, cf=0)),
    ("C1 EBDA segment", dict(ax=0xC100), {}, dict(ax=0xC100, es=EBDA_SEGMENT, cf=0)),
    ("E801 memory size", dict(ax=0xE801), {}, dict(ax=MEMORY_MB * 1024, cx=MEMORY_MB * 1024, bx=0, dx=0, cf=0)),
    ("E820 first entry", dict(eax=0xE820, edx=SMAP, ebx=0, ecx=24, di=0x6000), {},
     dict(eax=SMAP, ebx=1, ecx=20, cf=0, **{"mem:6000+14": struct.pack("<QQI", 0, CONVENTIONAL_TOP, 1)})),
    ("E820 last entry", dict(eax=0xE820, edx=SMAP, ebx=3, ecx=20, di=0x6000), {},
     dict(eax=SMAP, ebx=0, ecx=20, cf=0,
          **{"mem:6000+14": struct.pack("<QQI", EXTENDED_BASE, MEMORY_MB << 20, 1)})),
    ("E820 past the end", dict(eax=0xE820, edx=SMAP, ebx=4, ecx=20), {}, dict(ah=0x86, cf=1)),
    ("E820 without SMAP", dict(eax=0xE820, edx=0, ebx=0, ecx=20), {}, dict(ah=0x86, cf=1)),
    ("E820 buffer too small", dict(eax=0xE820, edx=SMAP, ebx=0, ecx=19), {}, dict(ah=0x86, cf=1)),
    ("5300 APM check", dict(ax=0x5300, bx=0), {}, dict(ax=0x0102, bx=0x504D, cx=0, cf=0)),
    ("5300 APM bad device", dict(ax=0x5300, bx=1), {}, dict(ah=0x09, cf=1)),
    ("5304 not connected", dict(ax=0x5304, bx=0), {}, dict(ah=0x03, cf=1)),
    ("5301 connect", dict(ax=0x5301, bx=0), {}, dict(ah=0x00, cf=0)),
    ("5301 already connected", dict(ax=0x5301, bx=0), {}, dict(ah=0x02, cf=1)),
    ("5302 no 16-bit interface", dict(ax=0x5302, bx=0), {}, dict(ah=0x05, cf=1)),
    ("5303 no 32-bit interface", dict(ax=0x5303, bx=0), {}, dict(ah=0x07, cf=1)),
    ("5303 bad device", dict(ax=0x5303, bx=1), {}, dict(ah=0x09, cf=1)),
    ("530A power status", dict(ax=0x530A, bx=1), {}, dict(ah=0x00, bx=0x01FF, cx=0x80FF, dx=0xFFFF, cf=0)),
    ("530B no events", dict(ax=0x530B), {}, dict(ah=0x80, cf=1)),
    ("530E driver version", dict(ax=0x530E, bx=0, cx=0x0102), {}, dict(ax=0x0102, cf=0)),
    ("530E a 1.1 driver", dict(ax=0x530E, bx=0, cx=0x0101), {}, dict(ax=0x0101, cf=0)),
    ("530E a newer driver", dict(ax=0x530E, bx=0, cx=0x0103), {}, dict(ax=0x0102, cf=0)),
    ("5304 disconnect", dict(ax=0x5304, bx=0), {}, dict(ah=0x00, cf=0)),
    ("5399 is not a function", dict(ax=0x5399), {}, dict(ah=0x86, cf=1)),
    ("C200 enable without a handler", dict(ax=0xC200, bx=0x0100), {}, dict(ah=0x05, cf=1)),
    ("C200 bad argument", dict(ax=0xC200, bx=0x0200), {}, dict(ah=0x01, cf=1)),
    ("C201 reset", dict(ax=0xC201), {}, dict(ah=0x00, bx=0x00AA, cf=0)),
    ("C202 bad rate", dict(ax=0xC202, bx=0x0700), {}, dict(ah=0x02, cf=1)),
    ("C204 device ID", dict(ax=0xC204, bx=0x5500), {}, dict(ah=0x00, bh=0x00, cf=0)),
    ("C205 initialize, 3-byte packets", dict(ax=0xC205, bx=0x0300), {}, dict(ah=0x00, cf=0)),
    ("C205 other packet sizes", dict(ax=0xC205, bx=0x0400), {}, dict(ah=0x03, cf=1)),
    ("C206 status", dict(ax=0xC206, bx=0), {}, dict(ah=0x00, bl=0x00, cl=2, dl=100, cf=0)),
    ("C299 is not a function", dict(ax=0xC299), {}, dict(ah=0x01, cf=1)),
    ("FF is not a function", dict(ax=0xFF00), {}, dict(ax=0x8600, cf=1)),
]


@pytest.mark.parametrize("entry, memory, expected", [row[1:] for row in CALLS], ids=[row[0] for row in CALLS])
def test_int15_function(machine, entry, memory, expected):
    state = call(machine, machine.bios.system.int15, entry, flags=opposite_flags(expected), memory=memory)
    check(machine, state, expected)


@pytest.mark.parametrize("flags", [0x0002, 0x0003])
def test_int11_int12_leave_flags(machine, flags):
    system = machine.bios.system
    state = call(machine, system.int11, dict(ax=0xFFFF), flags=flags)
    check(machine, state, dict(ax=machine.bios.system.bda.equipment_list_flags, cf=flags & 1))
    state = call(machine, system.int12, dict(ax=0xFFFF), flags=flags)
    check(machine, state, dict(ax=CONVENTIONAL_TOP // 1024, cf=flags & 1))
