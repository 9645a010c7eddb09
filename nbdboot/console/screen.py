"""Reading the 80x25 text screen out of guest memory (B800:0000, active page)."""

from __future__ import annotations

COLS, ROWS = 80, 25
TEXT_BASE = 0xB8000


def _cp437_table() -> list[str]:
    table = [bytes((i,)).decode("cp437") for i in range(256)]
    table[0] = " "
    for i in range(1, 32):
        table[i] = " " if i != 0x10 and i != 0x11 else (">" if i == 0x10 else "<")
    return table


CP437 = _cp437_table()


def screen_lines(cpu) -> list[str]:
    """The active page's text, one string per row, trailing blanks stripped."""
    page_offset = cpu.read16(0x44E)
    data = cpu.read(TEXT_BASE + page_offset, COLS * ROWS * 2)
    chars = data[0::2]
    lines = []
    for row in range(ROWS):
        line = "".join(CP437[b] for b in chars[row * COLS:(row + 1) * COLS])
        lines.append(line.rstrip())
    return lines


def screen_text(cpu) -> str:
    return "\n".join(screen_lines(cpu)).rstrip("\n") + "\n"


def cursor(cpu) -> tuple[int, int]:
    page = cpu.read8(0x462) & 7
    value = cpu.read16(0x450 + 2 * page)
    return value >> 8, value & 0xFF
