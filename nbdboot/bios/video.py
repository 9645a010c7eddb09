"""int 10h text mode on a screen that is the memory at B800:0000.

Services read and write the text buffer directly, so the guest's own writes to
B800 and the BIOS's agree. Cursor positions live in the BDA (450h, one per
page) as on a real PC. Characters printed through the teletype path are also
streamed to `on_output`, the headless console's feed.
"""

from __future__ import annotations

from nbdboot.bios.bda import Bda
from nbdboot.machine import rom
from nbdboot.machine.memmap import VIDEO_TEXT

COLS, ROWS = 80, 25
PAGE_BYTES = 4096
CURSOR_POS = Bda.address("cursor_pos")  # 8 words, row:col per page


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
        }

    # -- BDA state -----------------------------------------------------------------
    def page(self) -> int:
        return self.bda.video_page

    def cursor(self, page: int) -> tuple[int, int]:
        col_row = self.m.cpu.read16(CURSOR_POS + 2 * (page & 7))
        return col_row >> 8, col_row & 0xFF  # row, col

    def put_cursor(self, page: int, row: int, col: int) -> None:
        self.m.cpu.write16(CURSOR_POS + 2 * (page & 7), (row << 8) | col, code=False)
        if page == self.page():
            pos = page * PAGE_BYTES // 2 + row * COLS + col
            crtc = self.m.vga.crtc
            crtc[0x0E], crtc[0x0F] = (pos >> 8) & 0xFF, pos & 0xFF

    def cell(self, page: int, row: int, col: int) -> int:
        return VIDEO_TEXT + (page & 7) * PAGE_BYTES + (row * COLS + col) * 2

    # -- dispatcher ----------------------------------------------------------------
    def int10(self) -> None:
        handler = self.functions.get(self.m.cpu.get("ah"))
        if handler:
            handler()
        elif self.m.cpu.get("ah") == 0x4F:
            self.m.cpu.set("ax", 0x014F)  # VBE call "supported", failed: no VBE

    # -- functions -----------------------------------------------------------------
    def set_mode(self) -> None:
        cpu = self.m.cpu
        al = cpu.get("al")
        mode = al & 0x7F
        bda = self.bda
        bda.video_mode = mode if mode in (0, 1, 2, 3, 7) else 3
        bda.video_cols = 40 if mode in (0, 1) else 80
        bda.video_page = 0
        bda.video_pagestart = 0
        for page in range(8):
            cpu.write16(CURSOR_POS + 2 * page, 0, code=False)
        if not al & 0x80:
            cpu.write(VIDEO_TEXT, b"\x20\x07" * (PAGE_BYTES // 2) * 8)
        cpu.set("al", 0x30 if mode in (0, 1, 2, 3, 7) else 0x20)

    def set_cursor_shape(self) -> None:
        self.bda.cursor_type = self.m.cpu.get("cx")

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
        self.bda.video_page = page
        self.bda.video_pagestart = page * PAGE_BYTES
        self.put_cursor(page, *self.cursor(page))

    def _scroll(self, up: bool) -> None:
        cpu = self.m.cpu
        lines, attr = cpu.get("al"), cpu.get("bh")
        top, left, bottom, right = cpu.get("ch"), cpu.get("cl"), cpu.get("dh"), cpu.get("dl")
        self.scroll(self.page(), top, left, min(bottom, ROWS - 1), min(right, COLS - 1), lines, attr, up)

    def scroll(self, page, top, left, bottom, right, lines, attr, up=True) -> None:
        if top > bottom or left > right:
            return
        cpu = self.m.cpu
        width = (right - left + 1) * 2
        height = bottom - top + 1
        if lines == 0 or lines > height:
            lines = height
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
        cpu.set("ax", cpu.read16(self.cell(page, row, col)))

    def _repeat(self, with_attr: bool) -> None:
        """09h/0Ah: positioned drawing, not streamed (DOS echoes text through teletype)."""
        cpu = self.m.cpu
        page, ch, count = cpu.get("bh"), cpu.get("al"), cpu.get("cx")
        row, col = self.cursor(page)
        start = self.cell(page, row, col)
        count = min(count, (ROWS * COLS) - (row * COLS + col))
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
        self.write_tty(self.page(), cpu.get("al"), None)

    def write_tty(self, page: int, ch: int, attr: int | None) -> None:
        cpu = self.m.cpu
        row, col = self.cursor(page)
        if ch == 0x07:
            pass
        elif ch == 0x08:
            col = max(0, col - 1)
        elif ch == 0x0D:
            col = 0
        elif ch == 0x0A:
            row += 1
        else:
            addr = self.cell(page, row, col)
            cpu.write(addr, bytes((ch,)) if attr is None else bytes((ch, attr)))
            col += 1
            if col >= COLS:
                col = 0
                row += 1
        if row >= ROWS:
            fill = cpu.read8(self.cell(page, ROWS - 1, 0) + 1) if attr is None else 0x07
            self.scroll(page, 0, 0, ROWS - 1, COLS - 1, 1, fill or 0x07)
            row = ROWS - 1
        self.put_cursor(page, row, col)
        if self.on_output:
            self.on_output(ch)

    def get_mode(self) -> None:
        cpu = self.m.cpu
        cpu.set("al", self.bda.video_mode)
        cpu.set("ah", self.bda.video_cols & 0xFF)
        cpu.set("bh", self.page())

    def font(self) -> None:
        cpu = self.m.cpu
        if cpu.get("al") == 0x30:  # font information
            cpu.set("es", rom.ROM_SEGMENT)
            cpu.set("bp", rom.FONT_8X8)
            cpu.set("cx", 16)
            cpu.set("dl", ROWS - 1)

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
