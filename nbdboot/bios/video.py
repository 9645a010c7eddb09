"""int 10h: mode sets that program the VGA (machine/devices/vga.py) as a VGA BIOS
does, text services on the memory at B800:0000, and characters and pixels in
the graphics modes. VBE (4Fxxh) is in bios/vbe.py.

Text services read and write the text buffer directly, so the guest's own
writes to B800 and the BIOS's agree. Cursor positions live in the BDA (450h,
one per page) as on a real PC; the screen's size is the BDA's (44Ah columns,
484h rows - 1), so 40-column and 43/50-line screens work. Characters printed
through the teletype path are also streamed to `on_output`, the headless
console's feed.
"""

from __future__ import annotations

import struct

from nbdboot.bios import vgamodes
from nbdboot.bios.bda import Bda
from nbdboot.bios.vgamodes import CGA, LINEAR8, MODES, PLANAR, TEXT
from nbdboot.machine import rom
from nbdboot.machine.memmap import VIDEO_TEXT

COLS, ROWS = 80, 25
PAGE_BYTES = 4096
CURSOR_POS = Bda.address("cursor_pos")  # 8 words, row:col per page
FONTS = {8: rom.FONT_8X8_FULL, 14: rom.FONT_8X14, 16: rom.FONT_8X16}
# The video tables POST writes into the ROM's free space below the fonts: IBM's video parameter
# table (29 entries of 64 bytes, indexed as in every VGA BIOS), the save pointer table BDA 4A8h
# points at, and int 10h 1Bh's static functionality table.
PARAM_TABLE = 0xA000                           # F000:A000
SAVE_POINTER = 0xA800                          # F000:A800
STATIC_FUNCTIONALITY = 0xA820                  # F000:A820
_PARAM_INDEX = {0x04: 0x04, 0x05: 0x05, 0x06: 0x06, 0x07: 0x07, 0x0D: 0x0D, 0x0E: 0x0E, 0x0F: 0x11, 0x10: 0x12,
                0x00: 0x17, 0x01: 0x17, 0x02: 0x18, 0x03: 0x18, 0x11: 0x1A, 0x12: 0x1B, 0x13: 0x1C}


class Video:
    def __init__(self, machine):
        self.m = machine
        self.bda = Bda(machine.cpu)
        self.on_output = None  # callable(str) for teletype text
        self.functions = {
            0x00: self.set_mode, 0x01: self.set_cursor_shape, 0x02: self.set_cursor,
            0x03: self.get_cursor, 0x05: self.set_page, 0x06: self.scroll_up, 0x07: self.scroll_down,
            0x08: self.read_char, 0x09: self.write_char_attr, 0x0A: self.write_char,
            0x0E: self.teletype, 0x0F: self.get_mode, 0x11: self.font, 0x12: self.alternate,
            0x13: self.write_string, 0x1A: self.display_combination,
            0x0B: self.cga_palette, 0x0C: self.write_pixel, 0x0D: self.read_pixel, 0x10: self.palette,
            0x1B: self.state_info,
        }
        from nbdboot.bios.vbe import Vbe
        self.vbe = Vbe(machine, self)
        self.mode: vgamodes.VgaMode = MODES[3]
        self.cols, self.rows = COLS, ROWS  # the BDA's 44Ah and 484h+1, kept here for the teletype path
        self.page_bytes = PAGE_BYTES

    def post(self) -> None:
        """Mode 3 as a VGA BIOS leaves it, and the tables programs read."""
        cpu = self.m.cpu
        base = rom.ROM_BASE
        cpu.write(base + STATIC_FUNCTIONALITY, bytes.fromhex("ffe00f00000000070208e70c00000000"))
        cpu.write(base + SAVE_POINTER, struct.pack("<HH", PARAM_TABLE, rom.ROM_SEGMENT) + bytes(24))
        for number, mode in MODES.items():
            entry = bytes((mode.cols, mode.rows - 1, mode.char_height)) + struct.pack("<H", mode.page_size) \
                + mode.seq + bytes((mode.misc,)) + mode.crtc + mode.attr + mode.gc
            cpu.write(base + PARAM_TABLE + 64 * _PARAM_INDEX.get(number, 0), entry.ljust(64, b"\0"))
        bda = cpu.read(0x4A8, 4)
        if bda == bytes(4):
            cpu.write(0x4A8, struct.pack("<HH", SAVE_POINTER, rom.ROM_SEGMENT))
        cpu.write(0x1F * 4, struct.pack("<HH", rom.FONT_8X8_FULL + 0x400, rom.ROM_SEGMENT))
        self.load_registers(MODES[3])
        cpu.write8(0x484, 24)
        self.vbe.post()

    def load_registers(self, mode: vgamodes.VgaMode, vbe=None) -> None:
        """Program the VGA for `mode`; `vbe`: the VBE mode that will show instead (no planar remap meanwhile)."""
        vga = self.m.vga
        self.mode = mode
        vga.vbe = vbe
        self.vbe.mode = vbe
        vga.misc = mode.misc
        vga.seq[0] = 0x03
        vga.seq[1:5] = mode.seq
        vga.crtc[:25] = mode.crtc
        vga.attr[:20] = mode.attr
        vga.attr[20] = 0
        vga.gc[:9] = mode.gc
        vga.dac[:] = bytes(768)
        vga.dac[:len(mode.palette)] = mode.palette
        vga.dac_bits = 6
        vga.pel_mask = 0xFF
        vga.text_font = (rom.ROM_BASE + FONTS.get(mode.char_height, rom.FONT_8X16), mode.char_height) \
            if mode.kind == TEXT else (rom.ROM_BASE + rom.FONT_8X16, 16)
        vga.update_mapping()

    # -- BDA state -----------------------------------------------------------------
    def page(self) -> int:
        return self.bda.video_page

    def cursor(self, page: int) -> tuple[int, int]:
        col_row = self.m.cpu.read16(CURSOR_POS + 2 * (page & 7))
        return col_row >> 8, col_row & 0xFF  # row, col

    def put_cursor(self, page: int, row: int, col: int) -> None:
        self.m.cpu.write16(CURSOR_POS + 2 * (page & 7), (row << 8) | col, code=False)
        if page == self.page():
            pos = page * self.page_bytes // 2 + row * self.cols + col
            crtc = self.m.vga.crtc
            crtc[0x0E], crtc[0x0F] = (pos >> 8) & 0xFF, pos & 0xFF

    def cell(self, page: int, row: int, col: int) -> int:
        return VIDEO_TEXT + (page & 7) * self.page_bytes + (row * self.cols + col) * 2

    # -- dispatcher ----------------------------------------------------------------
    def int10(self) -> None:
        handler = self.functions.get(self.m.cpu.get("ah"))
        if handler:
            handler()
        elif self.m.cpu.get("ah") == 0x4F:
            self.vbe.int10()

    # -- functions -----------------------------------------------------------------
    def set_mode(self) -> None:
        cpu = self.m.cpu
        al = cpu.get("al")
        self.set_video_mode(al & 0x7F, clear=not al & 0x80)
        number = al & 0x7F
        cpu.set("al", 0x20 if number > 7 and number != 0x13 else (0x30 if number != 6 else 0x3F))

    def set_video_mode(self, number: int, clear: bool = True, vbe=None) -> bool:
        mode = MODES.get(number)
        if mode is None:
            return False
        cpu = self.m.cpu
        self.load_registers(mode, vbe)
        cpu.write8(0x449, number)
        cpu.write16(0x44A, mode.cols)
        cpu.write16(0x44C, mode.page_size)
        cpu.write16(0x44E, 0)
        for page in range(8):
            cpu.write16(0x450 + 2 * page, 0)
        cpu.write16(0x460, 0x0607 if mode.kind == TEXT else 0)
        cpu.write8(0x462, 0)
        cpu.write16(0x463, 0x3B4 if number == 7 else 0x3D4)
        cpu.write8(0x465, {0: 0x2C, 1: 0x28, 2: 0x2D, 3: 0x29, 4: 0x2A, 5: 0x2E, 6: 0x1E, 7: 0x29}.get(number, 0x29))
        cpu.write8(0x466, 0x30 if number in (4, 5) else 0x3F)
        cpu.write8(0x484, mode.rows - 1)
        cpu.write16(0x485, mode.char_height)
        self.cols, self.rows, self.page_bytes = mode.cols, mode.rows, mode.page_size or 0x10000
        cpu.write8(0x487, 0x60 | (0 if clear else 0x80))
        cpu.write8(0x489, 0x51)
        cpu.write(0x43 * 4, struct.pack("<HH", rom.FONT_8X16 if mode.char_height == 16 else
                                        rom.FONT_8X14 if mode.char_height == 14 else rom.FONT_8X8, rom.ROM_SEGMENT))
        if clear:
            self._clear(mode)
        return True

    def _clear(self, mode) -> None:
        cpu, vga = self.m.cpu, self.m.vga
        if mode.kind == TEXT:
            cpu.write(mode.segment << 4, b"\x20\x07" * 0x4000)
        elif mode.kind == CGA:
            cpu.write(0xB8000, bytes(0x8000))
        elif mode.kind == PLANAR:
            for plane in vga.planes:
                plane[:] = bytes(len(plane))
        else:
            cpu.write(0xA0000, bytes(0x10000))

    def set_cursor_shape(self) -> None:
        cpu = self.m.cpu
        shape = cpu.get("cx")
        cpu.write16(0x460, shape)
        start, end = shape >> 8, shape & 0xFF
        height = cpu.read16(0x485)
        # Cursor emulation (BDA 487h bit 0 clear): CGA-style lines 0-7 scaled to the character height.
        if not cpu.read8(0x487) & 1 and height > 8 and end < 8 and start < 0x20:
            if end != start + 1:
                start = (start + 1) * height // 8 - 1
            else:
                start = (end + 1) * height // 8 - 2
            end = (end + 1) * height // 8 - 1
        crtc = self.m.vga.crtc
        crtc[0x0A], crtc[0x0B] = start, end

    def set_cursor(self) -> None:
        cpu = self.m.cpu
        self.put_cursor(cpu.get("bh"), cpu.get("dh"), cpu.get("dl"))

    def get_cursor(self) -> None:
        cpu = self.m.cpu
        row, col = self.cursor(cpu.get("bh"))
        cpu.set("dx", (row << 8) | col)
        cpu.set("cx", self.bda.cursor_type)
        cpu.set("ax", 0)

    def set_page(self) -> None:
        cpu = self.m.cpu
        page = cpu.get("al") & 7
        cpu.write8(0x462, page)
        cpu.write16(0x44E, page * self.page_bytes)
        if self.mode.kind == TEXT:
            start = page * self.page_bytes // 2
            self.m.vga.crtc[0x0C], self.m.vga.crtc[0x0D] = start >> 8, start & 0xFF
        self.put_cursor(page, *self.cursor(page))

    def _scroll(self, up: bool) -> None:
        cpu = self.m.cpu
        lines, attr = cpu.get("al"), cpu.get("bh")
        top, left, bottom, right = cpu.get("ch"), cpu.get("cl"), cpu.get("dh"), cpu.get("dl")
        self.scroll(self.page(), top, left, min(bottom, self.rows - 1), min(right, self.cols - 1), lines, attr, up)

    def scroll(self, page, top, left, bottom, right, lines, attr, up=True) -> None:
        if top > bottom or left > right:
            return
        height = bottom - top + 1
        if lines == 0 or lines > height:
            lines = height
        if self.mode.kind != TEXT:
            self._scroll_graphics(top, left, bottom, right, lines, attr, up)
            return
        cpu = self.m.cpu
        width = (right - left + 1) * 2
        rows = [cpu.read(self.cell(page, r, left), width) for r in range(top, bottom + 1)]
        blank = bytes((0x20, attr)) * (width // 2)
        if up:
            rows = rows[lines:] + [blank] * lines
        else:
            rows = [blank] * lines + rows[:height - lines]
        for i, data in enumerate(rows):
            cpu.write(self.cell(page, top + i, left), data)

    def scroll_up(self) -> None:
        self._scroll(True)

    def scroll_down(self) -> None:
        self._scroll(False)

    def read_char(self) -> None:
        cpu = self.m.cpu
        page = cpu.get("bh")
        row, col = self.cursor(page)
        if self.mode.kind != TEXT:
            cpu.set("ax", 0)
            return
        cpu.set("ax", cpu.read16(self.cell(page, row, col)))

    def _repeat(self, with_attr: bool) -> None:
        """09h/0Ah: positioned drawing, not streamed (DOS echoes text through teletype)."""
        cpu = self.m.cpu
        page, ch, count = cpu.get("bh"), cpu.get("al"), cpu.get("cx")
        row, col = self.cursor(page)
        cols = self.cols
        count = min(count, (self.rows * cols) - (row * cols + col))
        if self.mode.kind != TEXT:
            for i in range(count):
                r, c = divmod(row * cols + col + i, cols)
                self.draw_char(r, c, ch, cpu.get("bl"))
            return
        start = self.cell(page, row, col)
        if with_attr:
            cpu.write(start, bytes((ch, cpu.get("bl"))) * count)
        else:
            old = bytearray(cpu.read(start, count * 2))
            old[0::2] = bytes((ch,)) * count
            cpu.write(start, old)

    def write_char_attr(self) -> None:
        self._repeat(True)

    def write_char(self) -> None:
        self._repeat(False)

    def teletype(self) -> None:
        cpu = self.m.cpu
        if self.mode.kind != TEXT:
            self.write_tty(self.page(), cpu.get("al"), cpu.get("bl"))
            return
        self.write_tty(self.page(), cpu.get("al"), None)

    def write_tty(self, page: int, ch: int, attr: int | None) -> None:
        cpu = self.m.cpu
        row, col = self.cursor(page)
        cols, rows = self.cols, self.rows
        if ch == 0x07:
            pass
        elif ch == 0x08:
            col = max(0, col - 1)
        elif ch == 0x0D:
            col = 0
        elif ch == 0x0A:
            row += 1
        else:
            if self.mode.kind == TEXT:
                addr = self.cell(page, row, col)
                cpu.write(addr, bytes((ch,)) if attr is None else bytes((ch, attr)))
            else:
                self.draw_char(row, col, ch, 0x0F if attr is None else attr)
            col += 1
            if col >= cols:
                col = 0
                row += 1
        if row >= rows:
            if self.mode.kind == TEXT:
                fill = cpu.read8(self.cell(page, rows - 1, 0) + 1) if attr is None else 0x07
            else:
                fill = 0
            self.scroll(page, 0, 0, rows - 1, cols - 1, 1, fill or (0x07 if self.mode.kind == TEXT else 0))
            row = rows - 1
        self.put_cursor(page, row, col)
        if self.on_output:
            self.on_output(ch)

    def get_mode(self) -> None:
        cpu = self.m.cpu
        cpu.set("al", cpu.read8(0x449) | (cpu.read8(0x487) & 0x80))
        cpu.set("ah", cpu.read16(0x44A) & 0xFF)
        cpu.set("bh", self.page())

    # -- fonts (11h) -------------------------------------------------------------------
    def font(self) -> None:
        cpu = self.m.cpu
        al = cpu.get("al")
        if al == 0x30:  # font information
            bh = cpu.get("bh")
            pointers = {0: None, 1: None, 2: (rom.FONT_8X14, 14), 3: (rom.FONT_8X8, 8),
                        4: (rom.FONT_8X8_FULL + 0x400, 8), 5: (rom.FONT_8X14, 14), 6: (rom.FONT_8X16, 16),
                        7: (rom.FONT_8X16, 16)}
            if bh in (0, 1):
                seg, off = cpu.ivt_entry(0x1F if bh == 0 else 0x43)
                cpu.set("es", seg)
                cpu.set("bp", off)
            elif bh in pointers:
                cpu.set("es", rom.ROM_SEGMENT)
                cpu.set("bp", pointers[bh][0])
            cpu.set("cx", cpu.read16(0x485) or 16)
            cpu.set("dl", cpu.read8(0x484))
            return
        if self.mode.kind != TEXT:
            return
        heights = {0x01: 14, 0x02: 8, 0x04: 16, 0x11: 14, 0x12: 8, 0x14: 16}
        vga = self.m.vga
        if al in heights:  # load a ROM font (1x: and program the CRTC for it)
            height = heights[al]
            vga.text_font = (rom.ROM_BASE + FONTS[height], height)
            if al & 0x10:
                self._set_char_height(height)
        elif al in (0x00, 0x10):  # user font at ES:BP, CX glyphs from DX, BH bytes each
            height = cpu.get("bh") or 16
            count, first = cpu.get("cx"), cpu.get("dx")
            source, old_height = vga.text_font
            font = bytearray(source if isinstance(source, bytes) else cpu.read(source, 256 * old_height)) \
                if old_height == height else bytearray(256 * height)
            data = cpu.read((cpu.get("es") << 4) + cpu.get("bp"), count * height)
            font[first * height:(first + count) * height] = data[:max(0, (256 - first)) * height]
            vga.text_font = (bytes(font[:256 * height]), height)  # as if in plane 2: kept by the VGA
            if al & 0x10:
                self._set_char_height(height)

    def _set_char_height(self, height: int) -> None:
        vga, cpu = self.m.vga, self.m.cpu
        lines = vga.vertical_lines()
        rows = lines // height
        vga.crtc[0x09] = (vga.crtc[0x09] & 0xE0) | (height - 1)
        vga.crtc[0x0A] = height - 3 if height > 8 else 6
        vga.crtc[0x0B] = height - 2 if height > 8 else 7
        cpu.write8(0x484, rows - 1)
        cpu.write16(0x485, height)
        cpu.write16(0x460, (vga.crtc[0x0A] << 8) | vga.crtc[0x0B])
        self.rows = rows
        page_bytes = ((rows * self.cols * 2) + 0xFF) & ~0xFF
        cpu.write16(0x44C, page_bytes)
        self.page_bytes = page_bytes

    def alternate(self) -> None:
        cpu = self.m.cpu
        if cpu.get("bl") == 0x10:  # EGA information: colour, 256 KiB
            cpu.set("bx", 0x0003)
            cpu.set("cx", 0x0009)

    def write_string(self) -> None:
        cpu = self.m.cpu
        mode, page, attr, count = cpu.get("al"), cpu.get("bh"), cpu.get("bl"), cpu.get("cx")
        saved = self.cursor(page)
        self.put_cursor(page, cpu.get("dh"), cpu.get("dl"))
        addr = (cpu.get("es") << 4) + cpu.get("bp")
        step = 2 if mode & 2 else 1
        data = cpu.read(addr, count * step)
        for i in range(count):
            ch = data[i * step]
            a = data[i * step + 1] if step == 2 else attr
            self.write_tty(page, ch, a)
        if not mode & 1:
            self.put_cursor(page, *saved)

    def display_combination(self) -> None:
        cpu = self.m.cpu
        if cpu.get("al") == 0:
            cpu.set("al", 0x1A)
            cpu.set("bx", 0x0008)  # VGA with colour display

    def state_info(self) -> None:
        """1Bh: the 64-byte dynamic state table at ES:DI."""
        cpu = self.m.cpu
        if cpu.get("bx") != 0:
            return
        bda = cpu.read(0x449, 0x1E)
        info = bytearray(64)
        struct.pack_into("<HH", info, 0, STATIC_FUNCTIONALITY, rom.ROM_SEGMENT)
        info[0x04:0x22] = bda
        info[0x22] = cpu.read8(0x484)            # rows - 1, as the BDA has it (SeaVGABIOS too)
        struct.pack_into("<H", info, 0x23, cpu.read16(0x485))
        info[0x25], info[0x26] = 0x08, 0x00      # active / alternate display: VGA colour
        info[0x27] = 16 if self.mode.kind != LINEAR8 else 0
        info[0x28] = 0
        info[0x29] = 8 if self.mode.kind == TEXT else 1
        info[0x2A] = {200: 1, 350: 2, 400: 2, 480: 3}.get(self.mode.height, 2) if self.mode.kind != TEXT else 2
        info[0x31] = 3                            # 256 KiB of video memory
        cpu.write((cpu.get("es") << 4) + cpu.get("di"), bytes(info))
        cpu.set("al", 0x1B)

    # -- palettes (0Bh, 10h) -----------------------------------------------------------
    def cga_palette(self) -> None:
        cpu, vga = self.m.cpu, self.m.vga
        bh, bl = cpu.get("bh"), cpu.get("bl")
        if bh == 0:  # background / border colour
            vga.attr[0x11] = bl & 0x0F
            if self.mode.kind != TEXT:
                vga.attr[0] = (bl & 0x07) | ((bl & 0x08) << 1)
        elif bh == 1 and self.mode.number in (4, 5):  # palette 0 (green/red/brown) or 1 (cyan/magenta/white)
            intensity = vga.attr[0] & 0x10
            for i in (1, 2, 3):
                vga.attr[i] = (2 * i + (bl & 1)) | intensity

    def palette(self) -> None:
        cpu, vga = self.m.cpu, self.m.vga
        al = cpu.get("al")
        es_dx = (cpu.get("es") << 4) + cpu.get("dx")
        if al == 0x00:
            vga.attr[cpu.get("bl") & 0x0F] = cpu.get("bh") & 0x3F
        elif al == 0x01:
            vga.attr[0x11] = cpu.get("bh")
        elif al == 0x02:
            data = cpu.read(es_dx, 17)
            vga.attr[0:16] = data[:16]
            vga.attr[0x11] = data[16]
        elif al == 0x03:
            vga.attr[0x10] = (vga.attr[0x10] & ~0x08) | ((cpu.get("bl") & 1) << 3)
        elif al == 0x07:
            cpu.set("bh", vga.attr[cpu.get("bl") & 0x1F] if (cpu.get("bl") & 0x1F) < 21 else 0)
        elif al == 0x08:
            cpu.set("bh", vga.attr[0x11])
        elif al == 0x09:
            cpu.write(es_dx, bytes(vga.attr[0:16]) + bytes((vga.attr[0x11],)))
        elif al == 0x10:
            i = cpu.get("bx") & 0xFF
            vga.dac[3 * i:3 * i + 3] = bytes((cpu.get("dh") & 0x3F, cpu.get("ch") & 0x3F, cpu.get("cl") & 0x3F))
        elif al == 0x12:
            first, count = cpu.get("bx") & 0xFF, min(cpu.get("cx"), 256 - (cpu.get("bx") & 0xFF))
            vga.dac[3 * first:3 * (first + count)] = bytes(v & 0x3F for v in cpu.read(es_dx, 3 * count))
        elif al == 0x13:
            if cpu.get("bl") == 0:
                vga.attr[0x10] = (vga.attr[0x10] & ~0x80) | ((cpu.get("bh") & 1) << 7)
            else:
                vga.attr[0x14] = cpu.get("bh") & 0x0F
        elif al == 0x15:
            i = cpu.get("bx") & 0xFF
            r, g, b = vga.dac[3 * i:3 * i + 3]
            cpu.set("dh", r)
            cpu.set("ch", g)
            cpu.set("cl", b)
        elif al == 0x17:
            first, count = cpu.get("bx") & 0xFF, min(cpu.get("cx"), 256 - (cpu.get("bx") & 0xFF))
            cpu.write(es_dx, bytes(vga.dac[3 * first:3 * (first + count)]))
        elif al == 0x18:
            vga.pel_mask = cpu.get("bl")
        elif al == 0x19:
            cpu.set("bl", vga.pel_mask)
        elif al == 0x1A:
            cpu.set("bx", (vga.attr[0x14] << 8) | (vga.attr[0x10] >> 7))
        elif al == 0x1B:  # sum to grey shades
            first, count = cpu.get("bx") & 0xFF, min(cpu.get("cx"), 256 - (cpu.get("bx") & 0xFF))
            for i in range(first, first + count):
                r, g, b = vga.dac[3 * i:3 * i + 3]
                grey = min(0x3F, (77 * r + 151 * g + 28 * b + 0x80) >> 8)
                vga.dac[3 * i:3 * i + 3] = bytes((grey, grey, grey))

    # -- graphics: pixels and characters -------------------------------------------------
    def _glyph(self, ch: int, height: int) -> bytes:
        cpu = self.m.cpu
        if height == 8 and ch >= 0x80:
            seg, off = cpu.ivt_entry(0x1F)
            return cpu.read((seg << 4) + off + (ch - 0x80) * 8, 8)
        seg, off = cpu.ivt_entry(0x43)
        return cpu.read((seg << 4) + off + ch * height, height)

    def draw_char(self, row: int, col: int, ch: int, color: int) -> None:
        mode, cpu, vga = self.mode, self.m.cpu, self.m.vga
        height = mode.char_height
        glyph = self._glyph(ch, height)
        if mode.kind == LINEAR8:
            for y, bits in enumerate(glyph):
                line = bytes(color if bits & (0x80 >> x) else 0 for x in range(8))
                cpu.write(0xA0000 + (row * height + y) * 320 + col * 8, line)
        elif mode.kind == PLANAR:
            stride = mode.cols
            xor = color & 0x80
            for y, bits in enumerate(glyph):
                at = (row * height + y) * stride + col
                for p, plane in enumerate(vga.planes):
                    value = bits if color & (1 << p) else 0
                    plane[at] = plane[at] ^ value if xor else value
        elif mode.kind == CGA:
            two = mode.number != 6
            for y, bits in enumerate(glyph):
                sy = row * height + y
                at = 0xB8000 + (sy >> 1) * 80 + (0x2000 if sy & 1 else 0) + col * (2 if two else 1)
                if two:
                    word = 0
                    for x in range(8):
                        if bits & (0x80 >> x):
                            word |= (color & 3) << (14 - 2 * x)
                    data = bytes((word >> 8, word & 0xFF))
                else:
                    data = bytes((bits,))
                if color & 0x80:
                    old = cpu.read(at, len(data))
                    data = bytes(a ^ b for a, b in zip(old, data))
                cpu.write(at, data)

    def _scroll_graphics(self, top, left, bottom, right, lines, attr, up) -> None:
        mode, cpu, vga = self.mode, self.m.cpu, self.m.vga
        height = mode.char_height
        if mode.kind == PLANAR:
            stride = mode.cols
            for plane_index, plane in enumerate(vga.planes):
                fill = 0xFF if attr & (1 << plane_index) else 0
                rows = list(range(top, bottom + 1))
                order = rows if up else rows[::-1]
                for r in order:
                    src = r + lines if up else r - lines
                    for y in range(height):
                        dst_at = (r * height + y) * stride + left
                        n = right - left + 1
                        if top <= src <= bottom:
                            src_at = (src * height + y) * stride + left
                            plane[dst_at:dst_at + n] = plane[src_at:src_at + n]
                        else:
                            plane[dst_at:dst_at + n] = bytes((fill,)) * n
            return
        if mode.kind == LINEAR8:
            def line_addr(sy, x):
                return 0xA0000 + sy * 320 + x * 8
            width_bytes, fill = (right - left + 1) * 8, bytes((attr,))
        else:
            per = 2 if mode.number != 6 else 1

            def line_addr(sy, x):
                return 0xB8000 + (sy >> 1) * 80 + (0x2000 if sy & 1 else 0) + x * per
            width_bytes, fill = (right - left + 1) * per, b"\0"
        rows = list(range(top, bottom + 1))
        for r in (rows if up else rows[::-1]):
            src = r + lines if up else r - lines
            for y in range(height):
                dst = line_addr(r * height + y, left)
                if top <= src <= bottom:
                    cpu.write(dst, cpu.read(line_addr(src * height + y, left), width_bytes))
                else:
                    cpu.write(dst, fill * width_bytes)

    def write_pixel(self) -> None:
        cpu = self.m.cpu
        self.put_pixel(cpu.get("cx"), cpu.get("dx"), cpu.get("al"))

    def put_pixel(self, x: int, y: int, color: int) -> None:
        mode, cpu, vga = self.mode, self.m.cpu, self.m.vga
        if x >= mode.width or y >= mode.height or mode.kind == TEXT:
            return
        if mode.kind == LINEAR8:
            cpu.write8(0xA0000 + y * 320 + x, color)
        elif mode.kind == PLANAR:
            at, bit = y * mode.cols + (x >> 3), 0x80 >> (x & 7)
            for p, plane in enumerate(vga.planes):
                on = color & (1 << p)
                if color & 0x80:
                    if on:
                        plane[at] ^= bit
                elif on:
                    plane[at] |= bit
                else:
                    plane[at] &= ~bit & 0xFF
        else:
            at = 0xB8000 + (y >> 1) * 80 + (0x2000 if y & 1 else 0)
            if mode.number == 6:
                at, shift, mask = at + (x >> 3), 7 - (x & 7), 1
            else:
                at, shift, mask = at + (x >> 2), 6 - 2 * (x & 3), 3
            old = cpu.read8(at)
            value = (color & mask) << shift
            cpu.write8(at, old ^ value if color & 0x80 else (old & ~(mask << shift)) | value)

    def read_pixel(self) -> None:
        cpu = self.m.cpu
        cpu.set("al", self.get_pixel(cpu.get("cx"), cpu.get("dx")))

    def get_pixel(self, x: int, y: int) -> int:
        mode, cpu, vga = self.mode, self.m.cpu, self.m.vga
        if x >= mode.width or y >= mode.height or mode.kind == TEXT:
            return 0
        if mode.kind == LINEAR8:
            return cpu.read8(0xA0000 + y * 320 + x)
        if mode.kind == PLANAR:
            at, shift = y * mode.cols + (x >> 3), 7 - (x & 7)
            return sum(((plane[at] >> shift) & 1) << p for p, plane in enumerate(vga.planes))
        at = 0xB8000 + (y >> 1) * 80 + (0x2000 if y & 1 else 0)
        if mode.number == 6:
            return (cpu.read8(at + (x >> 3)) >> (7 - (x & 7))) & 1
        return (cpu.read8(at + (x >> 2)) >> (6 - 2 * (x & 3))) & 3
