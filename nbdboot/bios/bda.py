"""The BIOS data area at 0040:0000, field by field, named as SeaBIOS's `struct bios_data_area_s` (src/std/bda.h).

`Bda(cpu)` reads and writes guest memory: `bda.timer_counter += 1` is a 32-bit read and write at 46Ch. Array
fields (`kbd_buf`, `cursor_pos`) are given as the address of their first element (`Bda.address("cursor_pos")`).
Only the fields the BIOS uses are listed; their offsets are tested against bda.h's layout.
"""

from __future__ import annotations

from nbdboot.machine.memmap import BDA

# name: (offset, size) as in SeaBIOS's struct bios_data_area_s
FIELDS = {
    "port_com": (0x00, 2), "port_lpt": (0x08, 2), "ebda_seg": (0x0E, 2),
    "equipment_list_flags": (0x10, 2), "mem_size_kb": (0x13, 2),
    "kbd_flag0": (0x17, 1), "kbd_flag1": (0x18, 1), "kbd_buf_head": (0x1A, 2), "kbd_buf_tail": (0x1C, 2),
    "kbd_buf": (0x1E, 2),
    "floppy_recalibration_status": (0x3E, 1), "floppy_motor_status": (0x3F, 1),
    "floppy_motor_counter": (0x40, 1), "floppy_last_status": (0x41, 1),
    "video_mode": (0x49, 1), "video_cols": (0x4A, 2), "video_pagesize": (0x4C, 2), "video_pagestart": (0x4E, 2),
    "cursor_pos": (0x50, 2), "cursor_type": (0x60, 2), "video_page": (0x62, 1), "crtc_address": (0x63, 2),
    "video_msr": (0x65, 1), "video_pal": (0x66, 1),
    "timer_counter": (0x6C, 4), "timer_rollover": (0x70, 1), "break_flag": (0x71, 1),
    "soft_reset_flag": (0x72, 2), "disk_last_status": (0x74, 1), "hdcount": (0x75, 1),
    "kbd_buf_start_offset": (0x80, 2), "kbd_buf_end_offset": (0x82, 2),
    "video_rows": (0x84, 1), "char_height": (0x85, 2), "video_ctl": (0x87, 1), "video_switches": (0x88, 1),
    "modeset_ctl": (0x89, 1), "floppy_harddisk_info": (0x8F, 1), "kbd_flag2": (0x96, 1),
}


class _Field:
    __slots__ = ("addr", "size")

    def __init__(self, offset: int, size: int):
        self.addr = BDA + offset
        self.size = size

    def __get__(self, bda, owner=None):
        if bda is None:
            return self
        cpu = bda.cpu
        if self.size == 1:
            return cpu.read8(self.addr)
        return cpu.read16(self.addr) if self.size == 2 else cpu.read32(self.addr)

    def __set__(self, bda, value: int) -> None:
        cpu = bda.cpu
        if self.size == 1:
            cpu.write8(self.addr, value, code=False)
        elif self.size == 2:
            cpu.write16(self.addr, value, code=False)
        else:
            cpu.write32(self.addr, value, code=False)


class Bda:
    """Typed access to the BDA of one machine's memory."""

    def __init__(self, cpu):
        self.cpu = cpu

    @staticmethod
    def address(name: str) -> int:
        """Linear address of a field (the first element of an array field)."""
        return BDA + FIELDS[name][0]

    @staticmethod
    def offset(name: str) -> int:
        """Offset of a field from 0040:0000 (what ring pointers like kbd_buf_head hold)."""
        return FIELDS[name][0]

    @staticmethod
    def image(**values: int) -> bytearray:
        """256 bytes of BDA with `values` set (for POST)."""
        data = bytearray(256)
        for name, value in values.items():
            offset, size = FIELDS[name]
            data[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        return data


for _name, (_offset, _size) in FIELDS.items():
    setattr(Bda, _name, _Field(_offset, _size))
