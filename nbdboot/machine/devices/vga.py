"""The VGA: its registers, its four planes, and the VBE linear framebuffer.

Registers (colour addresses, mono CRTC too): miscellaneous output (3C2h/3CCh),
sequencer (3C4h/3C5h), graphics controller (3CEh/3CFh), attribute controller
(3C0h/3C1h, its index/data flip-flop reset by reading input status 1 at 3DAh),
DAC (3C6h pel mask, 3C7h/3C8h read/write index, 3C9h data) and CRTC (3D4h/3D5h).

Memory: text modes, CGA modes and mode 13h leave A0000h-BFFFFh plain RAM (the
guest's stores cost nothing, and what the screen shows is read from RAM when
someone looks). Only while a planar mode is set (0Dh-12h, or a guest turning
chain-4 off) is A0000h-AFFFFh a Unicorn MMIO region backed by the four 64 KiB
planes here, with the VGA's latches, read modes 0/1, write modes 0-3, set/reset,
rotate, logical operation, bit mask and map mask (as QEMU's vga_mem_readb/writeb).

VBE: the linear framebuffer is plain RAM mapped at LFB_BASE on the first VBE
mode set; `vbe` holds the mode the renderer shows.
"""

from __future__ import annotations

from unicorn import UcError

PLANAR_BASE = 0xA0000
PLANAR_SIZE = 0x10000
LFB_BASE = 0xE0000000
LFB_SIZE = 16 * 1024 * 1024  # QEMU's stdvga default
PLANE_SIZE = 0x10000

# A byte expanded to all four planes, and a plane-enable nibble to a byte mask per plane.
_EXPAND4 = [b * 0x01010101 for b in range(256)]
_MASK16 = [sum(0xFF << (8 * p) for p in range(4) if n & (1 << p)) for n in range(16)]


def c6_to_8(v: int) -> int:
    """A 6-bit DAC value as 8 bits, as QEMU widens it (so pixels compare exactly)."""
    v &= 0x3F
    b = v & 1
    return (v << 2) | (b << 1) | b


def _rotate(value: int, count: int) -> int:
    return ((value >> count) | (value << (8 - count))) & 0xFF


class VbeMode:
    __slots__ = ("number", "width", "height", "bpp", "pitch")

    def __init__(self, number, width, height, bpp):
        self.number, self.width, self.height, self.bpp = number, width, height, bpp
        self.pitch = width * ((bpp + 7) // 8)


class Vga:
    def __init__(self, cpu=None):
        self.cpu = cpu
        self.hook_lock = None  # the machine's hook lock: a CPU stop never lands inside an MMIO access
        self.misc = 0x67
        self.seq_index = 0
        self.seq = bytearray(8)
        self.gc_index = 0
        self.gc = bytearray(16)
        self.attr_index = 0
        self.attr = bytearray(21)
        self.attr_flip = False  # False: the next 3C0h write is an index
        self.crtc_index = 0
        self.crtc = bytearray(32)
        self.dac = bytearray(768)  # 6-bit values (8-bit when dac_bits == 8)
        self.dac_bits = 6
        self.pel_mask = 0xFF
        self.dac_write = 0
        self.dac_read = 0
        self.dac_sub = 0
        self.dac_state = 0  # 3C7h read: 0 after a 3C7h write (read mode), 3 after 3C8h (write mode)
        self.feature = 0
        self.planes = [bytearray(PLANE_SIZE) for _ in range(4)]
        self.latch = 0
        self.planar_mapped = False
        self.lfb_mapped = False
        self.vbe: VbeMode | None = None
        self.text_font = (0xFC000, 16)  # the text font "in plane 2": a ROM address, or the bytes of a loaded font
        self.vbe_start = (0, 0)  # display start x, y
        self.vbe_line_pixels = 0  # logical scan line in pixels (4F06h), 0: the mode's width
        self._retrace = 0

    def attach(self, bus) -> None:
        bus.register((0x3C0,), lambda port: self.attr_index, self._attr_write, "vga")
        bus.register((0x3C1,), self._attr_read, None, "vga")
        bus.register((0x3C2,), lambda port: 0x10, self._misc_write, "vga")  # input status 0: switch sense
        bus.register((0x3C3,), lambda port: 1, None, "vga")
        bus.register((0x3C4,), lambda port: self.seq_index, self._seq_select, "vga")
        bus.register((0x3C5,), self._seq_read, self._seq_write, "vga")
        bus.register((0x3C6,), lambda port: self.pel_mask, self._pel_mask, "vga")
        bus.register((0x3C7,), lambda port: self.dac_state, self._dac_read_index, "vga")
        bus.register((0x3C8,), lambda port: self.dac_write, self._dac_write_index, "vga")
        bus.register((0x3C9,), self._dac_data_read, self._dac_data_write, "vga")
        bus.register((0x3CA,), lambda port: self.feature, None, "vga")
        bus.register((0x3CC,), lambda port: self.misc, None, "vga")
        bus.register((0x3CE,), lambda port: self.gc_index, self._gc_select, "vga")
        bus.register((0x3CF,), self._gc_read, self._gc_write, "vga")
        for base in (0x3B0, 0x3D0):
            bus.register((base + 4,), lambda port: self.crtc_index, self._crtc_select, "vga")
            bus.register((base + 5,), lambda port: self.crtc[self.crtc_index & 31], self._crtc_write, "vga")
            bus.register((base + 0xA,), self._status, self._feature_write, "vga")

    # -- ports ---------------------------------------------------------------------------
    def _misc_write(self, port, value):
        self.misc = value

    def _feature_write(self, port, value):
        self.feature = value

    def _seq_select(self, port, value):
        self.seq_index = value & 7

    def _seq_read(self, port):
        return self.seq[self.seq_index]

    def _seq_write(self, port, value):
        self.seq[self.seq_index] = value
        if self.seq_index == 4:
            self.update_mapping()

    def _gc_select(self, port, value):
        self.gc_index = value & 15

    def _gc_read(self, port):
        return self.gc[self.gc_index]

    def _gc_write(self, port, value):
        self.gc[self.gc_index] = value
        if self.gc_index == 6:
            self.update_mapping()

    def _attr_write(self, port, value):
        if not self.attr_flip:
            self.attr_index = value & 0x3F
        elif (self.attr_index & 0x1F) < len(self.attr):
            self.attr[self.attr_index & 0x1F] = value
        self.attr_flip = not self.attr_flip

    def _attr_read(self, port):
        i = self.attr_index & 0x1F
        return self.attr[i] if i < len(self.attr) else 0

    def _crtc_select(self, port, value):
        self.crtc_index = value

    def _crtc_write(self, port, value):
        self.crtc[self.crtc_index & 31] = value

    def _status(self, port):
        self.attr_flip = False
        # Retrace and display-enable toggle on every read: wait-for-retrace loops end at once.
        self._retrace ^= 0x09
        return self._retrace

    def _pel_mask(self, port, value):
        self.pel_mask = value

    def _dac_read_index(self, port, value):
        self.dac_read, self.dac_sub, self.dac_state = value, 0, 0

    def _dac_write_index(self, port, value):
        self.dac_write, self.dac_sub, self.dac_state = value, 0, 3

    def _dac_data_read(self, port):
        value = self.dac[self.dac_read * 3 + self.dac_sub]
        self.dac_sub += 1
        if self.dac_sub == 3:
            self.dac_sub, self.dac_read = 0, (self.dac_read + 1) & 0xFF
        return value

    def _dac_data_write(self, port, value):
        self.dac[self.dac_write * 3 + self.dac_sub] = value if self.dac_bits == 8 else value & 0x3F
        self.dac_sub += 1
        if self.dac_sub == 3:
            self.dac_sub, self.dac_write = 0, (self.dac_write + 1) & 0xFF

    # -- what the screen is ----------------------------------------------------------------
    @property
    def graphics(self) -> bool:
        return bool(self.gc[6] & 1)

    @property
    def chain4(self) -> bool:
        return bool(self.seq[4] & 0x08)

    def start_address(self) -> int:
        return (self.crtc[0x0C] << 8) | self.crtc[0x0D]

    def vertical_lines(self) -> int:
        c = self.crtc
        vde = c[0x12] | ((c[0x07] & 0x02) << 7) | ((c[0x07] & 0x40) << 3)
        return vde + 1

    def rgb_palette(self, attribute: bool = True) -> bytes:
        """768 bytes: the 8-bit RGB of each pixel value, through the attribute controller's
        palette (16-colour modes) and the DAC, with the pel mask applied."""
        dac = bytes(self.dac) if self.dac_bits == 8 else bytes(c6_to_8(v) for v in self.dac)
        if not attribute:
            indices = [i & self.pel_mask for i in range(256)]
        else:
            mode = self.attr[0x10]
            high = (self.attr[0x14] & 0x0C) << 4  # colour select bits 7-6
            out = []
            for i in range(256):
                v = self.attr[i & 15] & 0x3F
                if mode & 0x80:  # P5-P4 from colour select
                    v = (v & 0x0F) | ((self.attr[0x14] & 0x03) << 4)
                out.append((v | high) & self.pel_mask)
            indices = out
        return b"".join(dac[3 * i:3 * i + 3] for i in indices)

    # -- planar memory ---------------------------------------------------------------------
    def update_mapping(self) -> None:
        """A0000h is MMIO over the planes while a planar (non-chain-4) graphics mode is set."""
        want = self.graphics and not self.chain4 and (self.gc[6] >> 2) & 3 in (0, 1) and not self.vbe
        if want == self.planar_mapped or self.cpu is None:
            return
        uc = self.cpu.uc
        try:
            uc.mem_unmap(PLANAR_BASE, PLANAR_SIZE)
            if want:
                uc.mmio_map(PLANAR_BASE, PLANAR_SIZE, self._mmio_read, None, self._mmio_write, None)
            else:
                uc.mem_map(PLANAR_BASE, PLANAR_SIZE)
        except UcError as e:
            raise RuntimeError(f"cannot remap VGA memory: {e}") from None
        self.planar_mapped = want

    def _mmio_read(self, uc, offset, size, _user):
        if self.hook_lock is not None:
            with self.hook_lock:
                return self._read_bytes(offset, size)
        return self._read_bytes(offset, size)

    def _mmio_write(self, uc, offset, size, value, _user):
        if self.hook_lock is not None:
            with self.hook_lock:
                self._write_bytes(offset, size, value)
        else:
            self._write_bytes(offset, size, value)

    def _read_bytes(self, offset, size):
        value = 0
        for i in range(size):
            value |= self.read_byte(offset + i) << (8 * i)
        return value

    def _write_bytes(self, offset, size, value):
        for i in range(size):
            self.write_byte(offset + i, (value >> (8 * i)) & 0xFF)

    def read_byte(self, offset: int) -> int:
        offset &= 0xFFFF
        p = self.planes
        self.latch = p[0][offset] | (p[1][offset] << 8) | (p[2][offset] << 16) | (p[3][offset] << 24)
        gc = self.gc
        if not gc[5] & 0x08:
            return p[gc[4] & 3][offset]
        # Read mode 1: a 1 where every plane in colour don't care matches colour compare.
        differ = (self.latch ^ _MASK16[gc[2] & 15]) & _MASK16[gc[7] & 15]
        differ |= differ >> 16
        differ |= differ >> 8
        return ~differ & 0xFF

    def write_byte(self, offset: int, value: int) -> None:
        offset &= 0xFFFF
        gc = self.gc
        mode = gc[5] & 3
        if mode == 1:
            v = self.latch
        else:
            if mode == 0:
                value = _rotate(value, gc[3] & 7)
                v = _EXPAND4[value]
                enable = _MASK16[gc[1] & 15]
                v = (v & ~enable) | (_MASK16[gc[0] & 15] & enable)
                mask = gc[8]
            elif mode == 2:
                v = _MASK16[value & 15]
                mask = gc[8]
            else:
                value = _rotate(value, gc[3] & 7)
                mask = gc[8] & value
                v = _MASK16[gc[0] & 15]
            op = (gc[3] >> 3) & 3
            latch = self.latch
            if op == 1:
                v &= latch
            elif op == 2:
                v |= latch
            elif op == 3:
                v ^= latch
            m = _EXPAND4[mask]
            v = (v & m) | (latch & ~m)
        planes = self.planes
        map_mask = self.seq[2]
        for p in range(4):
            if map_mask & (1 << p):
                planes[p][offset] = (v >> (8 * p)) & 0xFF

    # -- the VBE framebuffer -----------------------------------------------------------------
    def map_lfb(self) -> None:
        """RAM for the framebuffer, taken out of the open bus above RAM (machine/cpu.py maps it as MMIO)."""
        if self.lfb_mapped or self.cpu is None:
            return
        uc = self.cpu.uc
        try:
            uc.mem_unmap(LFB_BASE, LFB_SIZE)
        except UcError:
            pass  # nothing mapped there
        uc.mem_map(LFB_BASE, LFB_SIZE)
        self.lfb_mapped = True
