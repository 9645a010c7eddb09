"""POST and bootstrap: the IVT, BDA and EBDA as a real PC leaves them; int 18h/19h.

int 19h reads sector 0 of the boot drive to 0000:7C00 and jumps there with DL
= drive (it never returns, as on real BIOSes); called again by a guest it boots
again the same way, as SeaBIOS does. Guests may hook it (FreeDOS does, to
restore its vectors on reboot), so it is reached through the IVT.
"""

from __future__ import annotations

import struct
import time

from nbdboot.disk.base import DiskError
from nbdboot.errors import BootFailed
from nbdboot.machine import rom
from nbdboot.bios.bda import Bda
from nbdboot.machine.memmap import BDA, BOOT_SECTOR, CONVENTIONAL_TOP, EBDA_SEGMENT, EBDA_SIZE, VIDEO_TEXT

BOOT_ADDR = 0x7C00
TICKS_PER_DAY = 0x1800B0


def bda_ticks(seconds_since_midnight: float) -> int:
    return int(seconds_since_midnight * TICKS_PER_DAY / 86400) % TICKS_PER_DAY


class Boot:
    def __init__(self, machine, bios):
        self.m = machine
        self.bios = bios
        self.boot_drive = 0x80

    def post(self, boot_drive: int) -> None:
        cpu = self.m.cpu
        self.boot_drive = boot_drive
        self.posted = True   # the reset vector's code may run once without meaning a reset
        self.boots = 0       # int 19h calls since POST
        ivt = bytearray()
        for vector in range(256):
            ivt += struct.pack("<HH", rom.stub(vector), rom.ROM_SEGMENT)

        def point(vector, offset, segment=rom.ROM_SEGMENT):
            ivt[vector * 4:vector * 4 + 4] = struct.pack("<HH", offset, segment)

        point(0x08, rom.IRQ0)
        point(0x09, rom.IRQ1)
        for vector in range(0x0A, 0x10):
            point(vector, rom.IRQ_MASTER_DEFAULT)
        for vector in range(0x70, 0x78):
            point(vector, rom.IRQ_SLAVE_DEFAULT)
        point(0x74, rom.IRQ12)
        point(0x1D, 0, 0)
        point(0x1E, rom.DISKETTE_PARAMS)
        point(0x1F, 0, 0)
        point(0x43, rom.FONT_8X8)
        disks = self.bios.disk
        has_hd = disks.hard_disk_count() > 0
        point(0x41, rom.FDPT if has_hd else 0, rom.ROM_SEGMENT if has_hd else 0)
        point(0x46, rom.FDPT + 16 if has_hd else 0, rom.ROM_SEGMENT if has_hd else 0)
        for vector in range(0x60, 0x68):
            point(vector, 0, 0)  # user vectors: free for programs
        cpu.write(0, ivt)
        # The lines without a BIOS user stay masked, as SeaBIOS leaves them (B8h/8Eh): timer, keyboard,
        # cascade, floppy, RTC, mouse, FPU and the disks on. A program that hooks IRQ3/IRQ4 unmasks them.
        self.m.pic.master.imr, self.m.pic.slave.imr = 0xB8, 0x8E

        now = time.localtime(self.m.clock.wall_epoch)
        midnight = now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec
        ring, ring_end = Bda.offset("kbd_buf"), Bda.offset("kbd_buf") + 32
        bda = Bda.image(
            ebda_seg=EBDA_SEGMENT,
            equipment_list_flags=0x0020 | 0x0002,  # colour 80x25, FPU; disks.post() adds the floppies
            mem_size_kb=CONVENTIONAL_TOP // 1024,
            kbd_buf_head=ring, kbd_buf_tail=ring, kbd_buf_start_offset=ring, kbd_buf_end_offset=ring_end,
            video_mode=0x03, video_cols=80, video_pagesize=4096, cursor_type=0x0607, crtc_address=0x3D4,
            video_msr=0x29, video_pal=0x30, timer_counter=bda_ticks(midnight),
            video_rows=24, char_height=16, video_ctl=0x60, video_switches=0x09, modeset_ctl=0x51,
            floppy_harddisk_info=0x07 if disks.floppy_count() else 0,
            kbd_flag2=0x10,  # enhanced keyboard
        )
        cpu.write(BDA, bda)
        ebda = bytearray(EBDA_SIZE)
        ebda[0] = 1
        cpu.write(EBDA_SEGMENT << 4, ebda)
        cpu.write(VIDEO_TEXT, b"\x20\x07" * 2000 * 4)
        cpu.write(BOOT_SECTOR - 0x100, bytes(0x100))
        disks.post()

    def post_entry(self) -> None:
        """The trap at F000:E05B, reached from the reset vector. Right after POST it is the boot
        starting; any other time a guest jumped to F000:FFF0 (or E05B) to reboot: a reset."""
        if self.posted:
            self.posted = False
            return
        self.m.request_reset("the guest jumped to the reset vector (F000:FFF0)")

    def int18(self) -> None:
        """INT 18 - Boot failure (ROM BASIC on an IBM PC). Does not return: the run ends, exit 4."""
        self.m.fail(BootFailed("the guest called int 18h: no bootable disk"))

    def int19(self) -> None:
        """INT 19 - Bootstrap. Does not return: the boot sector of the boot drive runs at 0000:7C00 (a CD's
        no-emulation image at its load segment:0000) with DL = the drive, the other general registers 0,
        DS = ES = FS = GS = SS = 0, SP = 7C00h, FLAGS 0202h. A drive that is missing, unreadable or without
        55AAh ends the run (exit 4; a lost NBD server, its own exit code).

        Boot: POST's call, or a guest's (FreeDOS's reboot path, a boot menu's "boot next"). As
        SeaBIOS's handle_19, a guest's call starts the boot sequence again without a reset
        (with --no-reboot it ends the run instead, as a reset would)."""
        self.boots += 1
        if self.boots > 1 and self.m.no_reboot:
            self.m.request_reset("int 19h from the guest (re-boot)")
            return
        cpu = self.m.cpu
        drive = self.bios.disk.route(self.boot_drive)
        if drive is None:
            self.m.fail(BootFailed(f"no disk at BIOS drive {self.boot_drive:#04x}"))
            return
        if drive.is_cdrom:
            self._boot_eltorito(drive)
            return
        try:
            sector = drive.device.pread(512, 0)
        except DiskError as e:
            if getattr(e, "exit_code", None):  # the server failed, not the disk: an NBD error
                self.m.fail(e)
            else:
                self.m.fail(BootFailed(f"cannot read the boot sector: {e}"))
            return
        if sector[510:512] != b"\x55\xaa":
            self.m.fail(BootFailed(f"drive {self.boot_drive:#04x} has no boot signature (55AA)"))
            return
        cpu.write(BOOT_ADDR, sector)
        self._enter(self.boot_drive, 0, BOOT_ADDR)

    def _enter(self, drive_number: int, cs: int, ip: int) -> None:
        """The hand-off as iPXE's sanboot makes it: general registers 0 but DL = the drive,
        data segments 0, the stack below 0:7C00, interrupts on."""
        cpu = self.m.cpu
        for reg in ("eax", "ebx", "ecx", "esi", "edi", "ebp"):
            cpu.set(reg, 0)
        cpu.set("edx", drive_number)
        for seg in ("ds", "es", "fs", "gs", "ss"):
            cpu.set(seg, 0)
        cpu.set("esp", BOOT_ADDR)
        cpu._write_flags_live(0x0202, running=True)
        cpu.set("cs", cs)
        cpu.set("eip", ip)
        # Start the boot code in a fresh slice. Unicorn 2.1 carries on after a hook that
        # moved CS, but a later asynchronous stop (the watchdog's) in that same run then
        # reports a stale EIP: the start of a block whose instructions already ran, so
        # they ran twice on resume (a boot sector's `push cx` doubled, a crash at 0:0043).
        self.m.stop("boot")

    def _boot_eltorito(self, drive) -> None:
        """A no-emulation El Torito image, as iPXE's eltorito.c: loaded at its load segment (07C0h if 0) and
        entered at segment:0000 with DL = the CD's drive number."""
        from nbdboot.bios.int13 import eltorito_boot_image
        try:
            found = eltorito_boot_image(drive.device)
        except DiskError as e:
            self.m.fail(e if getattr(e, "exit_code", None) else BootFailed(f"cannot read the CD: {e}"))
            return
        if found is None:
            self.m.fail(BootFailed(f"drive {drive.number:#04x} is a CD without a no-emulation El Torito image"))
            return
        segment, image = found
        self.m.cpu.write(segment << 4, image)
        self._enter(drive.number, segment, 0)
