"""int 10h 4Fxxh: VESA BIOS Extensions 3.0 over the VGA's linear framebuffer.

Modes are the Bochs/QEMU VBE numbers (so a guest picks the same mode on both):
640x480, 800x600 and 1024x768 at 8, 15, 16, 24 and 32 bits per pixel, plus
640x400x8. The framebuffer is plain RAM at LFB_BASE (mapped on the first VBE
mode set), so drawing costs the guest nothing (vesamenu.c32, GRUB and KolibriOS
use it). Programs without LFB support draw through the 64 KiB window at A0000h,
also plain RAM: window A (64 KiB granularity) shows one bank of the framebuffer,
chosen with 4F05h or the mode's WinFuncPtr. The window is a copy: a bank switch
writes it back to its bank and loads the next, and a render writes it back
first, once the guest has switched banks since the mode set (a guest that only
uses the LFB never has its framebuffer overwritten from A0000h). Strings, the
mode list and the WinFuncPtr routine live in the ROM at VBE_DATA.
"""

from __future__ import annotations

import struct

from nbdboot.machine import rom
from nbdboot.machine.devices.vga import LFB_BASE, LFB_SIZE, VbeMode

VBE_DATA = 0xA900  # F000:A900, after the video tables
MODE_LIST = (
    (0x100, 640, 400, 8), (0x101, 640, 480, 8), (0x103, 800, 600, 8), (0x105, 1024, 768, 8),
    (0x110, 640, 480, 15), (0x111, 640, 480, 16), (0x112, 640, 480, 24),
    (0x113, 800, 600, 15), (0x114, 800, 600, 16), (0x115, 800, 600, 24),
    (0x116, 1024, 768, 15), (0x117, 1024, 768, 16), (0x118, 1024, 768, 24),
    (0x142, 640, 480, 32), (0x143, 800, 600, 32), (0x144, 1024, 768, 32),
)
MODES = {n: VbeMode(n, w, h, b) for n, w, h, b in MODE_LIST}
OEM = b"nbdboot VBE\0"
VENDOR = b"nbdboot\0"
PRODUCT = b"emulated VGA\0"
REVISION = b"1.0\0"
OK, FAILED = 0x004F, 0x014F
WINDOW = 0xA0000
WINDOW_SIZE = 0x10000
BANKS = LFB_SIZE // WINDOW_SIZE
# The WinFuncPtr routine, called far with BL window, DX bank: mov ax, 4F05h; int 10h; retf. As the VBE
# specification allows, AX (and DX on a get) come back changed.
WINDOW_FUNCTION = bytes((0xB8, 0x05, 0x4F, 0xCD, 0x10, 0xCB))


class Vbe:
    def __init__(self, machine, video):
        self.m = machine
        self.video = video
        self.mode: VbeMode | None = None
        self.lfb_flag = 0
        self.bank = 0          # the framebuffer bank window A shows
        self.banked = False    # the guest switched banks since the mode set: the window holds its drawing
        self._data_at = {}

    def post(self) -> None:
        blob = bytearray()
        for name, data in (("oem", OEM), ("vendor", VENDOR), ("product", PRODUCT), ("revision", REVISION)):
            self._data_at[name] = VBE_DATA + len(blob)
            blob += data
        self._data_at["modes"] = VBE_DATA + len(blob)
        blob += b"".join(struct.pack("<H", n) for n in MODES) + b"\xff\xff"
        self._data_at["window"] = VBE_DATA + len(blob)
        blob += WINDOW_FUNCTION
        self.m.cpu.write(rom.ROM_BASE + VBE_DATA, bytes(blob))

    def _far(self, name: str) -> int:
        return (rom.ROM_SEGMENT << 16) | self._data_at[name]

    def int10(self) -> None:
        cpu = self.m.cpu
        al = cpu.get("al")
        handler = {0x00: self.controller_info, 0x01: self.mode_info, 0x02: self.set_mode, 0x03: self.get_mode,
                   0x05: self.window, 0x06: self.scan_line, 0x07: self.display_start, 0x08: self.dac_width,
                   0x09: self.palette}.get(al)
        if handler is None:
            cpu.set("ax", FAILED)
            return
        cpu.set("ax", handler())

    def _es_di(self) -> int:
        cpu = self.m.cpu
        return (cpu.get("es") << 4) + cpu.get("di")

    def controller_info(self) -> int:
        cpu = self.m.cpu
        at = self._es_di()
        vbe2 = cpu.read(at, 4) == b"VBE2"
        info = bytearray(512 if vbe2 else 256)
        info[0:4] = b"VESA"
        struct.pack_into("<HIIIH", info, 4, 0x0300, self._far("oem"), 0x00000001, self._far("modes"),
                         LFB_SIZE >> 16)
        if vbe2:
            struct.pack_into("<HIII", info, 0x14, 0x0100, self._far("vendor"), self._far("product"),
                             self._far("revision"))
        cpu.write(at, bytes(info))
        return OK

    def mode_info(self) -> int:
        cpu = self.m.cpu
        mode = MODES.get(cpu.get("cx") & 0x1FF)
        if mode is None:
            return FAILED
        info = bytearray(256)
        bpp = mode.bpp
        pitch = mode.pitch
        pages = max(0, LFB_SIZE // (pitch * mode.height) - 1)
        struct.pack_into("<HBBHHHHIH", info, 0, 0x009B, 0x07, 0x00, 64, 64, 0xA000, 0, self._far("window"), pitch)
        struct.pack_into("<HHBBBBBBBBB", info, 0x12, mode.width, mode.height, 8, 16, 1, bpp, 1,
                         4 if bpp == 8 else 6, 0, min(pages, 255), 1)
        masks = {8: (0, 0, 0, 0, 0, 0, 0, 0), 15: (5, 10, 5, 5, 5, 0, 1, 15), 16: (5, 11, 6, 5, 5, 0, 0, 0),
                 24: (8, 16, 8, 8, 8, 0, 0, 0), 32: (8, 16, 8, 8, 8, 0, 8, 24)}[bpp]
        info[0x1F:0x27] = bytes(masks)
        info[0x27] = 0
        struct.pack_into("<IIH", info, 0x28, LFB_BASE, 0, 0)
        struct.pack_into("<HBB", info, 0x32, pitch, min(pages, 255), min(pages, 255))
        info[0x36:0x3E] = bytes(masks)
        struct.pack_into("<I", info, 0x3E, 0)
        cpu.write(self._es_di(), bytes(info))
        return OK

    def set_mode(self) -> int:
        cpu = self.m.cpu
        bx = cpu.get("bx")
        number = bx & 0x1FF
        vga = self.m.vga
        if number < 0x100:
            if not self.video.set_video_mode(number, clear=not bx & 0x8000):
                return FAILED
            self.mode = None
            return OK
        mode = MODES.get(number)
        if mode is None:
            return FAILED
        vga.map_lfb()
        self.video.set_video_mode(0x13 if mode.bpp == 8 else 0x12, clear=False, vbe=mode)  # VGA registers under VBE
        vga.vbe_start = (0, 0)
        vga.vbe_line_pixels = 0
        self.mode = mode
        self.lfb_flag = bx & 0x4000
        if mode.bpp == 8:
            vga.dac[:] = bytes(768)
            from nbdboot.bios.vgamodes import VGA256
            vga.dac[:len(VGA256)] = VGA256
        if not bx & 0x8000:
            cpu.write(LFB_BASE, bytes(mode.pitch * mode.height))
        self.bank, self.banked = 0, False
        cpu.write(WINDOW, cpu.read(LFB_BASE, WINDOW_SIZE))  # window A shows bank 0
        cpu.write8(0x449, 0x13 if mode.bpp == 8 else 0x12)  # what a VGA BIOS reports in a VBE mode (QEMU: as set)
        return OK

    def get_mode(self) -> int:
        cpu = self.m.cpu
        if self.m.vga.vbe is not None and self.mode is not None:
            cpu.set("bx", self.mode.number | self.lfb_flag)
        else:
            cpu.set("bx", cpu.read8(0x449))
        return OK

    def window(self) -> int:
        """4F05h: BH 00h set window BL (A only) to bank DX (64 KiB units), 01h get it in DX."""
        cpu = self.m.cpu
        bh, bl = cpu.get("bh"), cpu.get("bl")
        if bh > 1 or bl != 0:
            return FAILED
        if bh == 1:
            cpu.set("dx", self.bank)
            return OK
        bank = cpu.get("dx")
        if bank >= BANKS:
            return FAILED
        if self.m.vga.vbe is not None:
            self.banked = True  # what the guest drew before its first switch was bank 0's
            self.sync_window()
            cpu.write(WINDOW, cpu.read(LFB_BASE + bank * WINDOW_SIZE, WINDOW_SIZE))
        self.bank = bank
        return OK

    def sync_window(self) -> None:
        """Write window A back to its bank (before a switch or a render), once the guest banks."""
        if self.banked and self.m.vga.vbe is not None:
            cpu = self.m.cpu
            cpu.write(LFB_BASE + self.bank * WINDOW_SIZE, cpu.read(WINDOW, WINDOW_SIZE))

    def scan_line(self) -> int:
        cpu, vga = self.m.cpu, self.m.vga
        mode = vga.vbe
        if mode is None:
            return FAILED
        bl = cpu.get("bl")
        bytes_pp = (mode.bpp + 7) // 8
        if bl == 0:
            vga.vbe_line_pixels = max(cpu.get("cx"), mode.width)
        elif bl == 2:
            vga.vbe_line_pixels = max(cpu.get("cx") // bytes_pp, mode.width)
        elif bl == 3:
            pixels = min(LFB_SIZE // mode.height // bytes_pp, 0x7FFF // bytes_pp)
            cpu.set("bx", pixels * bytes_pp)
            cpu.set("cx", pixels)
            cpu.set("dx", LFB_SIZE // (pixels * bytes_pp))
            return OK
        elif bl != 1:
            return FAILED
        pixels = vga.vbe_line_pixels or mode.width
        cpu.set("bx", pixels * bytes_pp)
        cpu.set("cx", pixels)
        cpu.set("dx", LFB_SIZE // (pixels * bytes_pp))
        return OK

    def display_start(self) -> int:
        cpu, vga = self.m.cpu, self.m.vga
        if vga.vbe is None:
            return FAILED
        bl = cpu.get("bl")
        if bl in (0x00, 0x80):
            vga.vbe_start = (cpu.get("cx"), cpu.get("dx"))
        elif bl == 0x01:
            cpu.set("bh", 0)
            cpu.set("cx", vga.vbe_start[0])
            cpu.set("dx", vga.vbe_start[1])
        elif bl in (0x02, 0x82):
            mode = vga.vbe
            pitch = (vga.vbe_line_pixels or mode.width) * ((mode.bpp + 7) // 8)
            start = cpu.get("ecx")
            vga.vbe_start = ((start % pitch) // ((mode.bpp + 7) // 8), start // pitch)
        elif bl == 0x04:
            cpu.set("cx", 0)  # the scheduled flip has happened
        else:
            return FAILED
        return OK

    def dac_width(self) -> int:
        cpu, vga = self.m.cpu, self.m.vga
        if cpu.get("bl") == 0:
            vga.dac_bits = 8 if cpu.get("bh") >= 8 else 6
        elif cpu.get("bl") != 1:
            return FAILED
        cpu.set("bh", vga.dac_bits)
        return OK

    def palette(self) -> int:
        cpu, vga = self.m.cpu, self.m.vga
        bl, count, first = cpu.get("bl"), cpu.get("cx"), cpu.get("dx")
        if first + count > 256:
            return FAILED
        at = self._es_di()
        mask = 0xFF if vga.dac_bits == 8 else 0x3F
        if bl in (0x00, 0x80):
            data = cpu.read(at, 4 * count)
            for i in range(count):
                b, g, r = data[4 * i], data[4 * i + 1], data[4 * i + 2]
                vga.dac[3 * (first + i):3 * (first + i) + 3] = bytes((r & mask, g & mask, b & mask))
        elif bl == 0x01:
            out = bytearray()
            for i in range(first, first + count):
                r, g, b = vga.dac[3 * i:3 * i + 3]
                out += bytes((b, g, r, 0))
            cpu.write(at, bytes(out))
        else:
            return FAILED
        return OK
