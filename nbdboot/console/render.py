"""The screen as pixels, computed only when someone looks (--screenshot, a VNC client).

What is shown follows the VGA's registers as a VGA's CRT controller would, so a
guest that programs them directly is drawn as it asked: text (9- or 8-dot cells,
the font the BIOS loaded, line-graphics and blink bits of the attribute
controller, the cursor), CGA's interleaved 2- and 1-bit modes at B8000h, planar
16-colour modes from the four planes, chained 256-colour mode 13h from A0000h,
and VBE modes from the linear framebuffer. Colours go through the attribute
controller and the DAC, widened from 6 to 8 bits as QEMU does, so a render can
be compared with QEMU's `screendump` pixel for pixel.

`render(machine)` returns (width, height, RGB bytes); `png(...)` encodes it.
The PNG encoder is the format's minimum (one IDAT, filter 0, zlib from the
standard library): a screenshot is written once per run, so Pillow's
optimisations would not earn a dependency.
"""

from __future__ import annotations

import struct
import zlib

from nbdboot.machine.devices.vga import LFB_BASE, PLANE_SIZE

TEXT_FONT_FALLBACK = (0xFC000, 16)  # F000:C000, the 8x16 ROM font


def _bits_table(width: int, nine: bool) -> list[bytes]:
    """Each font byte as `width` bytes of 0/1 (the 9th dot is blank; line graphics fill it later)."""
    table = []
    for value in range(256):
        row = bytes((value >> (7 - i)) & 1 for i in range(8))
        table.append(row + b"\0" if nine else row)
    return table


_ROWS8 = _bits_table(8, False)
_ROWS9 = _bits_table(9, True)
_ROWS9_LINE = [row[:8] + row[7:8] for row in _ROWS9]  # C0h-DFh repeat the 8th dot


def _to_rgb(indices: bytes, palette: bytes) -> bytes:
    """Pixel values through a 768-byte palette into packed RGB."""
    n = len(indices)
    out = bytearray(3 * n)
    out[0::3] = indices.translate(palette[0::3])
    out[1::3] = indices.translate(palette[1::3])
    out[2::3] = indices.translate(palette[2::3])
    return bytes(out)


def _double_width(indices: bytes) -> bytes:
    out = bytearray(2 * len(indices))
    out[0::2] = indices
    out[1::2] = indices
    return bytes(out)


def render(machine) -> tuple[int, int, bytes]:
    vga = machine.vga
    if vga.vbe is not None:
        return _render_vbe(machine)
    if not vga.graphics:
        return _render_text(machine)
    if vga.gc[5] & 0x40:
        return _render_256(machine)
    if (vga.gc[6] >> 2) & 3 == 3:
        return _render_cga(machine)
    return _render_planar(machine)


# -- text ---------------------------------------------------------------------------------------
def _render_text(machine) -> tuple[int, int, bytes]:
    vga, cpu = machine.vga, machine.cpu
    crtc = vga.crtc
    cols = crtc[1] + 1
    char_height = (crtc[9] & 0x1F) + 1
    rows = max(1, min(vga.vertical_lines() // char_height, 60))
    # A halved dot clock (40 columns) shows 8-dot cells twice as wide, as QEMU draws them.
    nine = not vga.seq[1] & 0x01 and not vga.seq[1] & 0x08
    cell_w = 9 if nine else 8
    source, font_height = getattr(vga, "text_font", TEXT_FONT_FALLBACK)
    font = source if isinstance(source, bytes) else cpu.read(source, 256 * font_height)
    base = (0xB0000 if not vga.misc & 1 else 0xB8000) + 2 * vga.start_address()
    pitch = 2 * crtc[0x13] * 2 if crtc[0x13] else 2 * cols
    data = cpu.read(base, pitch * (rows - 1) + 2 * cols)
    line_graphics = bool(vga.attr[0x10] & 0x04) and nine
    blink = bool(vga.attr[0x10] & 0x08)
    cursor_on = not crtc[0x0A] & 0x20
    cursor_at = ((crtc[0x0E] << 8) | crtc[0x0F]) - vga.start_address()
    cursor_rows = range(crtc[0x0A] & 0x1F, min(crtc[0x0B] & 0x1F, char_height - 1) + 1)
    width = cols * cell_w
    out = bytearray()
    glyph_cache: dict[int, list[bytes]] = {}
    tables = {}
    for row in range(rows):
        lines = [bytearray() for _ in range(char_height)]
        at = row * pitch
        for col in range(cols):
            ch, attr = data[at + 2 * col], data[at + 2 * col + 1]
            glyph = glyph_cache.get(ch)
            if glyph is None:
                bits = _ROWS9_LINE if line_graphics and 0xC0 <= ch <= 0xDF else (_ROWS9 if nine else _ROWS8)
                glyph = [bits[font[ch * font_height + y]] if y < font_height else bits[0] for y in range(char_height)]
                glyph_cache[ch] = glyph
            fg, bg = attr & 0x0F, attr >> 4
            if blink:
                bg &= 7
            key = (fg, bg)
            table = tables.get(key)
            if table is None:
                table = tables[key] = bytes((bg, fg)) + bytes(254)
            for y in range(char_height):
                lines[y] += glyph[y].translate(table)
            if cursor_on and row * cols + col == cursor_at:
                for y in cursor_rows:
                    start = len(lines[y]) - cell_w
                    lines[y][start:] = bytes((fg,)) * cell_w
        for line in lines:
            out += line
    height = rows * char_height
    indices = bytes(out)
    if vga.seq[1] & 0x08:  # dot clock halved: 40-column modes are twice as wide
        indices, width = _double_width(indices), width * 2
    return width, height, _to_rgb(indices, vga.rgb_palette(attribute=True))


def _scale(indices: bytes, width: int, height: int, out_w: int, out_h: int) -> bytes:
    """Pixel doubling as the CRT shows it: halved dot clock or 256-colour mode across, double scan down."""
    fx = max(1, out_w // width)
    fy = max(1, out_h // height)
    if fx == 1 and fy == 1:
        return indices
    rows = []
    for y in range(height):
        row = indices[y * width:(y + 1) * width]
        for _ in range(fx.bit_length() - 1):
            row = _double_width(row)
        rows.extend([row] * fy)
    return b"".join(rows)


# -- graphics -----------------------------------------------------------------------------------
def _scan_divisor(crtc) -> int:
    return ((crtc[9] & 0x1F) + 1) * (2 if crtc[9] & 0x80 else 1)


def _render_256(machine) -> tuple[int, int, bytes]:
    vga, cpu = machine.vga, machine.cpu
    crtc = vga.crtc
    width = (crtc[1] + 1) * 4
    height = vga.vertical_lines() // _scan_divisor(crtc)
    pitch = crtc[0x13] * 8 or width
    if vga.chain4:
        data = cpu.read(0xA0000, 0x10000)
        start = vga.start_address() * 4
        memory = data
    else:  # unchained ("mode X"): pixel x of a line is plane x % 4 at byte x // 4
        start = vga.start_address() * 4
        planes = vga.planes
        memory = bytearray(4 * PLANE_SIZE)
        for p in range(4):
            memory[p::4] = planes[p]
        memory = bytes(memory)
    rows = []
    for y in range(height):
        at = (start + y * pitch) % len(memory)
        rows.append(memory[at:at + width].ljust(width, b"\0"))
    out_w, out_h = (crtc[1] + 1) * 8, vga.vertical_lines()
    indices = _scale(b"".join(rows), width, height, out_w, out_h)
    return out_w, out_h, _to_rgb(indices, vga.rgb_palette(attribute=False))


def _render_cga(machine) -> tuple[int, int, bytes]:
    vga, cpu = machine.vga, machine.cpu
    crtc = vga.crtc
    height = vga.vertical_lines() // _scan_divisor(crtc) * ((crtc[9] & 0x1F) + 1)  # the rows' scan lines alternate banks
    data = cpu.read(0xB8000, 0x4000)
    two_bits = bool(vga.gc[5] & 0x20)
    line_bytes = crtc[0x13] * (2 if crtc[0x17] & 0x40 else 4)  # CRTC byte or word mode
    rows = []
    for y in range(height):
        at = (y >> 1) * line_bytes + (0x2000 if y & 1 else 0)
        line = data[at:at + line_bytes]
        if two_bits:
            rows.append(b"".join(_CGA2[b] for b in line))
        else:
            rows.append(b"".join(_ROWS8[b] for b in line))
    width = line_bytes * (4 if two_bits else 8)
    out_w, out_h = (crtc[1] + 1) * 8 * (2 if vga.seq[1] & 0x08 else 1), vga.vertical_lines()
    indices = _scale(b"".join(rows), width, height, out_w, out_h)
    return out_w, out_h, _to_rgb(indices, vga.rgb_palette(attribute=True))


_CGA2 = [bytes(((b >> s) & 3 for s in (6, 4, 2, 0))) for b in range(256)]
_PLANE_BITS = [[bytes(((b >> (7 - i)) & 1) << p for i in range(8)) for b in range(256)] for p in range(4)]


def _render_planar(machine) -> tuple[int, int, bytes]:
    vga = machine.vga
    crtc = vga.crtc
    width = (crtc[1] + 1) * 8
    height = vga.vertical_lines() // _scan_divisor(crtc)
    pitch = crtc[0x13] * 2
    start = vga.start_address()
    enable = vga.attr[0x12] & 0x0F
    line_bytes = width // 8
    total = 0
    for p in range(4):
        if not enable & (1 << p):
            continue
        plane = vga.planes[p]
        bits = _PLANE_BITS[p]
        chunks = []
        for y in range(height):
            at = (start + y * pitch) & 0xFFFF
            line = plane[at:at + line_bytes]
            chunks.append(b"".join(map(bits.__getitem__, line)).ljust(width, b"\0"))
        total |= int.from_bytes(b"".join(chunks), "big")
    indices = total.to_bytes(width * height, "big")
    out_w, out_h = width * (2 if vga.seq[1] & 0x08 else 1), vga.vertical_lines()
    indices = _scale(indices, width, height, out_w, out_h)
    return out_w, out_h, _to_rgb(indices, vga.rgb_palette(attribute=True))


def _render_vbe(machine) -> tuple[int, int, bytes]:
    vga, cpu = machine.vga, machine.cpu
    machine.bios.video.vbe.sync_window()  # what a banked guest drew in the window at A0000h
    mode = vga.vbe
    width, height, bpp = mode.width, mode.height, mode.bpp
    bytes_pp = (bpp + 7) // 8
    pitch = (vga.vbe_line_pixels or width) * bytes_pp
    x0, y0 = vga.vbe_start
    start = LFB_BASE + y0 * pitch + x0 * bytes_pp
    line = width * bytes_pp
    if pitch == line:
        data = cpu.read(start, line * height)
    else:
        data = b"".join(cpu.read(start + y * pitch, line) for y in range(height))
    if bpp == 8:
        return width, height, _to_rgb(data, vga.rgb_palette(attribute=False))
    n = width * height
    out = bytearray(3 * n)
    if bpp == 32:
        out[0::3], out[1::3], out[2::3] = data[2::4], data[1::4], data[0::4]
    elif bpp == 24:
        out[0::3], out[1::3], out[2::3] = data[2::3], data[1::3], data[0::3]
    else:
        _rgb16_tables()
        table = _RGB565 if bpp == 16 else _RGB555
        out = bytearray(b"".join(map(table.__getitem__, memoryview(data).cast("H"))))
    return width, height, bytes(out)


def _widen(v: int, bits: int) -> int:
    return (v << (8 - bits)) | (v >> (2 * bits - 8))


_RGB565: list[bytes] | None = None  # built on the first 15/16-bit render
_RGB555: list[bytes] | None = None


def _rgb16_tables():
    global _RGB565, _RGB555
    if _RGB565 is None:
        _RGB565 = [bytes((_widen(v >> 11, 5), _widen((v >> 5) & 0x3F, 6), _widen(v & 0x1F, 5))) for v in range(65536)]
        _RGB555 = [bytes((_widen((v >> 10) & 0x1F, 5), _widen((v >> 5) & 0x1F, 5), _widen(v & 0x1F, 5)))
                   for v in range(65536)]


# -- PNG --------------------------------------------------------------------------------------
def png(width: int, height: int, rgb: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    stride = 3 * width
    raw = b"".join(b"\0" + rgb[y * stride:(y + 1) * stride] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def read_png(data: bytes) -> tuple[int, int, bytes]:
    """Decode the PNGs `png()` writes (8-bit RGB, filter 0) and QEMU's (any of the five filters)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    at, idat, width = 8, b"", 0
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            if depth != 8 or colour not in (2, 6):
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride if f else 0):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    pixels = b"".join(rows)
    if channels == 4:
        rgb = bytearray(width * height * 3)
        rgb[0::3], rgb[1::3], rgb[2::3] = pixels[0::4], pixels[1::4], pixels[2::4]
        pixels = bytes(rgb)
    return width, height, pixels


def screenshot(machine, path: str) -> None:
    """Write the screen as it is now to `path` as a PNG."""
    width, height, rgb = render(machine)
    with open(path, "wb") as f:
        f.write(png(width, height, rgb))
