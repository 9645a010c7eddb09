"""The standard VGA modes: the register values a VGA BIOS loads for each (IBM's values,
the same in every VGA BIOS) and the default DAC palettes.

A mode is (kind, columns, rows, char height, memory segment, page size,
sequencer 1-4, misc, CRTC 0-24, attribute 0-19, graphics 0-8, palette).
"""

from __future__ import annotations

from typing import NamedTuple

TEXT, CGA, PLANAR, LINEAR8 = "text", "cga", "planar", "linear8"


def _ega64() -> bytes:
    """64 EGA colours: bits 0-2 give 2/3 of blue, green, red, bits 3-5 the remaining 1/3."""
    out = bytearray()
    for i in range(64):
        out += bytes((((i >> 2) & 1) * 0x2A + ((i >> 5) & 1) * 0x15,
                      ((i >> 1) & 1) * 0x2A + ((i >> 4) & 1) * 0x15,
                      (i & 1) * 0x2A + ((i >> 3) & 1) * 0x15))
    return bytes(out)


def _cga64() -> bytes:
    """The 16 CGA colours (brown, not dark yellow) with bit 4 as intensity."""
    out = bytearray()
    for i in range(64):
        c = i & 7
        bright = (i >> 4) & 1
        r, g, b = ((c >> 2) & 1) * 0x2A, ((c >> 1) & 1) * 0x2A, (c & 1) * 0x2A
        if c == 6 and not bright:
            g = 0x15
        out += bytes((r + 0x15 * bright, g + 0x15 * bright, b + 0x15 * bright))
    return bytes(out)


def _mono64() -> bytes:
    return b"".join(bytes((v, v, v)) for v in (([0] * 8 + [0x2A] * 16 + [0x3F] * 8) * 2))


def _vga256() -> bytes:
    """The VGA's default 256-colour palette: 16 CGA colours, 16 greys, then 9 rings of 24 hues
    (3 intensities x 3 saturations)."""
    cga = [0x00, 0x00, 0x00, 0x00, 0x00, 0x2A, 0x00, 0x2A, 0x00, 0x00, 0x2A, 0x2A,
           0x2A, 0x00, 0x00, 0x2A, 0x00, 0x2A, 0x2A, 0x15, 0x00, 0x2A, 0x2A, 0x2A,
           0x15, 0x15, 0x15, 0x15, 0x15, 0x3F, 0x15, 0x3F, 0x15, 0x15, 0x3F, 0x3F,
           0x3F, 0x15, 0x15, 0x3F, 0x15, 0x3F, 0x3F, 0x3F, 0x15, 0x3F, 0x3F, 0x3F]
    out = bytearray(cga)
    for v in (0x00, 0x05, 0x08, 0x0B, 0x0E, 0x11, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x28, 0x2D, 0x32, 0x38, 0x3F):
        out += bytes((v, v, v))
    rings = [(0x3F, (0x00, 0x10, 0x1F, 0x2F)), (0x3F, (0x1F, 0x27, 0x2F, 0x37)), (0x3F, (0x2D, 0x31, 0x36, 0x3A)),
             (0x1C, (0x00, 0x07, 0x0E, 0x15)), (0x1C, (0x0E, 0x11, 0x15, 0x18)), (0x1C, (0x14, 0x16, 0x18, 0x1A)),
             (0x10, (0x00, 0x04, 0x08, 0x0C)), (0x10, (0x08, 0x0A, 0x0C, 0x0E)), (0x10, (0x0B, 0x0C, 0x0D, 0x0F))]
    for hi, (lo, s1, s2, s3) in rings:
        up = (lo, s1, s2, s3)
        down = (hi, s3, s2, s1)
        ring = [(u, lo, hi) for u in up] + [(hi, lo, d) for d in down] + [(hi, u, lo) for u in up] \
            + [(d, hi, lo) for d in down] + [(lo, hi, u) for u in up] + [(lo, d, hi) for d in down]
        for rgb in ring:
            out += bytes(rgb)
    out += bytes(24)
    return bytes(out)


EGA64, CGA64, MONO64, VGA256 = _ega64(), _cga64(), _mono64(), _vga256()


class VgaMode(NamedTuple):
    number: int
    kind: str
    cols: int
    rows: int
    char_height: int
    segment: int
    page_size: int
    seq: bytes
    misc: int
    crtc: bytes
    attr: bytes
    gc: bytes
    palette: bytes

    @property
    def width(self) -> int:
        return {0x04: 320, 0x05: 320, 0x06: 640, 0x0D: 320, 0x13: 320}.get(self.number, 640)

    @property
    def height(self) -> int:
        return {0x0F: 350, 0x10: 350, 0x11: 480, 0x12: 480}.get(self.number, 200)


H = bytes.fromhex
SEQ_01, SEQ_03, SEQ_04, SEQ_06 = H("08030002"), H("00030002"), H("09030002"), H("01010006")
SEQ_0D, SEQ_0E, SEQ_13 = H("090f0006"), H("010f0006"), H("010f000e")
CRTC_01 = H("2d272890 2ba0bf1f 004f0d0e 00000000 9c8e8f14 1f96b9a3 ff".replace(" ", ""))
CRTC_03 = H("5f4f5082 5581bf1f 004f0d0e 00000000 9c8e8f28 1f96b9a3 ff".replace(" ", ""))
CRTC_04 = H("2d272890 2b80bf1f 00c10000 00000000 9c8e8f14 0096b9a2 ff".replace(" ", ""))
CRTC_06 = H("5f4f5082 5480bf1f 00c10000 00000000 9c8e8f28 0096b9c2 ff".replace(" ", ""))
CRTC_07 = H("5f4f5082 5581bf1f 004f0d0e 00000000 9c8e8f28 0f96b9a3 ff".replace(" ", ""))
CRTC_0D = H("2d272890 2b80bf1f 00c00000 00000000 9c8e8f14 0096b9e3 ff".replace(" ", ""))
CRTC_0E = H("5f4f5082 5480bf1f 00c00000 00000000 9c8e8f28 0096b9e3 ff".replace(" ", ""))
CRTC_0F = H("5f4f5082 5480bf1f 00400000 00000000 83855d28 0f63bae3 ff".replace(" ", ""))
CRTC_11 = H("5f4f5082 54800b3e 00400000 00000000 ea8cdf28 00e704e3 ff".replace(" ", ""))
CRTC_13 = H("5f4f5082 5480bf1f 00410000 00000000 9c8e8f28 4096b9a3 ff".replace(" ", ""))
ATTR_01 = H("00010203 04051407 38393a3b 3c3d3e3f 0c000f08".replace(" ", ""))
ATTR_04 = H("00131517 02040607 10111213 14151617 01000300".replace(" ", ""))
ATTR_06 = H("00171717 17171717 17171717 17171717 01000100".replace(" ", ""))
ATTR_07 = H("00080808 08080808 10181818 18181818 0e000f08".replace(" ", ""))
ATTR_0D = H("00010203 04050607 10111213 14151617 01000f00".replace(" ", ""))
ATTR_0F = H("00080000 18180000 00080000 00180000 01000100".replace(" ", ""))
ATTR_10 = ATTR_01[:16] + H("01000f00")
ATTR_11 = H("003f003f 003f003f 003f003f 003f003f 01000f00".replace(" ", ""))
ATTR_13 = H("00010203 04050607 08090a0b 0c0d0e0f 41000f00".replace(" ", ""))
GC_01, GC_04, GC_06 = H("000000000010 0e0fff".replace(" ", "")), H("000000000030 0f0fff".replace(" ", "")), \
    H("000000000000 0d0fff".replace(" ", ""))
GC_07, GC_0D, GC_13 = H("000000000010 0a0fff".replace(" ", "")), H("000000000000 050fff".replace(" ", "")), \
    H("000000000040 050fff".replace(" ", ""))

MODES = {m.number: m for m in (
    VgaMode(0x00, TEXT, 40, 25, 16, 0xB800, 0x0800, SEQ_01, 0x67, CRTC_01, ATTR_01, GC_01, EGA64),
    VgaMode(0x01, TEXT, 40, 25, 16, 0xB800, 0x0800, SEQ_01, 0x67, CRTC_01, ATTR_01, GC_01, EGA64),
    VgaMode(0x02, TEXT, 80, 25, 16, 0xB800, 0x1000, SEQ_03, 0x67, CRTC_03, ATTR_01, GC_01, EGA64),
    VgaMode(0x03, TEXT, 80, 25, 16, 0xB800, 0x1000, SEQ_03, 0x67, CRTC_03, ATTR_01, GC_01, EGA64),
    VgaMode(0x04, CGA, 40, 25, 8, 0xB800, 0x0800, SEQ_04, 0x63, CRTC_04, ATTR_04, GC_04, CGA64),
    VgaMode(0x05, CGA, 40, 25, 8, 0xB800, 0x0800, SEQ_04, 0x63, CRTC_04, ATTR_04, GC_04, CGA64),
    VgaMode(0x06, CGA, 80, 25, 8, 0xB800, 0x1000, SEQ_06, 0x63, CRTC_06, ATTR_06, GC_06, CGA64),
    VgaMode(0x07, TEXT, 80, 25, 16, 0xB000, 0x1000, SEQ_03, 0x66, CRTC_07, ATTR_07, GC_07, MONO64),
    VgaMode(0x0D, PLANAR, 40, 25, 8, 0xA000, 0x2000, SEQ_0D, 0x63, CRTC_0D, ATTR_0D, GC_0D, CGA64),
    VgaMode(0x0E, PLANAR, 80, 25, 8, 0xA000, 0x4000, SEQ_0E, 0x63, CRTC_0E, ATTR_0D, GC_0D, CGA64),
    VgaMode(0x0F, PLANAR, 80, 25, 14, 0xA000, 0x8000, SEQ_0E, 0xA3, CRTC_0F, ATTR_0F, GC_0D, MONO64),
    VgaMode(0x10, PLANAR, 80, 25, 14, 0xA000, 0x8000, SEQ_0E, 0xA3, CRTC_0F, ATTR_10, GC_0D, EGA64),
    VgaMode(0x11, PLANAR, 80, 30, 16, 0xA000, 0x0000, SEQ_0E, 0xE3, CRTC_11, ATTR_11, GC_0D, EGA64),
    VgaMode(0x12, PLANAR, 80, 30, 16, 0xA000, 0x0000, SEQ_0E, 0xE3, CRTC_11, ATTR_10, GC_0D, EGA64),
    VgaMode(0x13, LINEAR8, 40, 25, 8, 0xA000, 0x0000, SEQ_13, 0x63, CRTC_13, ATTR_13, GC_13, VGA256),
)}
