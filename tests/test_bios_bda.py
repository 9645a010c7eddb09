"""bios/bda.py: the BDA fields at the offsets PC BIOSes use (SeaBIOS bda.h, RBIL MEMORY.LST), read and written
through guest memory, and the POST image a booted machine holds."""

from __future__ import annotations

import pytest

from nbdboot.bios.bda import Bda
from nbdboot.pc import PC
from nbdboot.machine.memmap import BDA, CONVENTIONAL_TOP, EBDA_SEGMENT

# (field, offset from 0040:0000, size), from RBIL's MEMORY.LST, not from bda.py
KNOWN = [("ebda_seg", 0x0E, 2), ("equipment_list_flags", 0x10, 2), ("mem_size_kb", 0x13, 2),
         ("kbd_flag0", 0x17, 1), ("kbd_buf_head", 0x1A, 2), ("kbd_buf_tail", 0x1C, 2), ("kbd_buf", 0x1E, 2),
         ("floppy_motor_counter", 0x40, 1), ("floppy_last_status", 0x41, 1), ("video_mode", 0x49, 1),
         ("video_cols", 0x4A, 2), ("cursor_pos", 0x50, 2), ("cursor_type", 0x60, 2), ("video_page", 0x62, 1),
         ("crtc_address", 0x63, 2), ("timer_counter", 0x6C, 4), ("timer_rollover", 0x70, 1),
         ("disk_last_status", 0x74, 1), ("hdcount", 0x75, 1), ("kbd_buf_start_offset", 0x80, 2),
         ("kbd_buf_end_offset", 0x82, 2), ("video_rows", 0x84, 1), ("kbd_flag2", 0x96, 1)]


@pytest.mark.parametrize("name, offset, size", KNOWN, ids=[name for name, _, _ in KNOWN])
def test_field_sits_where_every_pc_bios_puts_it(name, offset, size):
    assert Bda.offset(name) == offset
    assert Bda.address(name) == BDA + offset


@pytest.fixture(scope="module")
def machine_1m():
    return PC(memory_mb=1)


@pytest.mark.parametrize("name, offset, size", KNOWN, ids=[name for name, _, _ in KNOWN])
def test_field_reads_and_writes_guest_memory_at_its_width(machine_1m, name, offset, size):
    bda = Bda(machine_1m.cpu)
    value = 0xA5C3B2E1 & ((1 << (8 * size)) - 1)
    setattr(bda, name, value)
    assert machine_1m.cpu.read(BDA + offset, size) == value.to_bytes(size, "little")
    assert getattr(bda, name) == value


def test_post_fills_the_bda_a_boot_sector_reads():
    machine = PC(memory_mb=1)
    machine.power_on(0x80)
    bda = Bda(machine.cpu)
    assert bda.mem_size_kb == CONVENTIONAL_TOP // 1024 and bda.ebda_seg == EBDA_SEGMENT
    assert bda.kbd_buf_head == bda.kbd_buf_tail == bda.kbd_buf_start_offset == 0x1E
    assert bda.kbd_buf_end_offset == 0x3E
    assert (bda.video_mode, bda.video_cols, bda.crtc_address) == (3, 80, 0x3D4)
