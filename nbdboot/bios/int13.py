"""int 13h disk services: the PC's own disks, and SAN drives hooked on top as iPXE's sanboot does.

Two tables, as on a real machine that iPXE SAN-boots: `firmware` holds the
disks the PC's BIOS found at POST (numbered as its BIOS numbers them), `san`
the drives hooked later (iPXE's int13_hook). A call is routed as iPXE's int13()
routes it: a SAN drive's number reaches the SAN drive, its *natural* number
(the next free one of its class when it was hooked) reaches the firmware disk
it displaced (pairwise swap), everything else goes to the firmware, which
answers 01h for a number it has no disk for. Both kinds are served by the same
handlers, one per AH, with the return convention of bios/service.py: a status
byte (0 = success) that the dispatcher puts in AH and the BDA (40:41 for
floppies, 40:74 for hard disks, as SeaBIOS's disk_ret), CF in the caller's
frame, where it sets IF too (some programs hang if a disk call returns with
interrupts off); or None, success with AH as the handler set it, which iPXE
keeps as the drive's last status. Every handler is called with the drive DL
routes to; its docstring gives its registers on entry and on return (iPXE's
int13.c style), beyond AH and CF. docs/int13.md, "Drives", has the numbering rules.
"""

from __future__ import annotations

import struct
import time

from nbdboot.disk.base import BlockDevice, DiskError, DiskReadOnlyError
from nbdboot.bios.bda import Bda
from nbdboot.machine import rom
from nbdboot.machine.cpu import FLAG_CF, FLAG_IF
from nbdboot.nbd.errors import NbdError


def _log():
    # logging costs 5-10 ms to import; a disk error is rare, every start is not.
    import logging
    return logging.getLogger("nbdboot.int13")


STATUS_RESET_FAILED = 0x05
STATUS_OK = 0x00
STATUS_INVALID = 0x01
STATUS_WRITE_PROTECTED = 0x03
STATUS_READ_ERROR = 0x04
STATUS_MEDIA_CHANGED = 0x06
STATUS_BOUNDARY = 0x09

SECTOR = 512
CD_SECTOR = 2048
DAP_SIZE = 0x20  # EDD disk address packet with the 64-bit flat buffer and the long count

# (cylinders, heads, sectors, CMOS drive type) by image size, as iPXE guesses floppies. The drive type is
# the CMOS one (1 = 360K 5.25", 2 = 1.2M 5.25", 3 = 720K 3.5", 4 = 1.44M 3.5", 5 = 2.88M 3.5"): the drive
# that reads the medium. SeaBIOS's internal types 6-8 for 160K/180K/320K are not CMOS values (FreeDOS
# panics "MCB chain corrupted" on a 180K floppy reported as type 7).
FLOPPY_GEOMETRIES = {
    160 * 1024: (40, 1, 8, 1), 180 * 1024: (40, 1, 9, 1), 320 * 1024: (40, 2, 8, 1),
    360 * 1024: (40, 2, 9, 1), 640 * 1024: (80, 2, 8, 3), 720 * 1024: (80, 2, 9, 3),
    1200 * 1024: (80, 2, 15, 2), 1440 * 1024: (80, 2, 18, 4), 1680 * 1024: (80, 2, 21, 4),
    1722 * 1024: (82, 2, 21, 4), 2880 * 1024: (80, 2, 36, 5),
}


def floppy_drive_type(cylinders: int, sectors: int) -> int:
    """The CMOS type of a drive that reads a medium of this geometry."""
    if cylinders <= 42:
        return 1 if sectors <= 9 else 2
    if sectors <= 9:
        return 3
    if sectors <= 15:
        return 2
    return 4 if sectors <= 24 else 5


def floppy_geometry(device: BlockDevice) -> tuple[int, int, int, int]:
    """(cylinders, heads, sectors, CMOS type) of a floppy image: by its size when it is a standard one,
    else from its boot sector's BPB (sectors per track, heads, total sectors), as DOS reads the medium;
    else 1.44M's 2 heads and 18 sectors with as many cylinders as the size holds."""
    known = FLOPPY_GEOMETRIES.get(device.size)
    if known:
        return known
    total_sectors = device.size // SECTOR
    try:
        sector = device.pread(SECTOR, 0)
    except DiskError:
        sector = bytes(SECTOR)
    bytes_per_sector, = struct.unpack_from("<H", sector, 11)
    spt, heads = struct.unpack_from("<HH", sector, 0x18)
    total, = struct.unpack_from("<H", sector, 0x13)
    if not total:
        total, = struct.unpack_from("<I", sector, 0x20)
    if bytes_per_sector == 512 and 1 <= spt <= 63 and 1 <= heads <= 2 and total:
        cylinders = max(1, min(total, total_sectors) // (spt * heads))
        return cylinders, heads, spt, floppy_drive_type(cylinders, spt)
    return max(1, total_sectors // 36), 2, 18, 4


def looks_like_floppy(device: BlockDevice) -> bool:
    """A floppy-sized image with a FAT boot sector and no partition table (`--drive auto`)."""
    if device.size not in FLOPPY_GEOMETRIES:
        return False
    sector = device.pread(SECTOR, 0)
    bytes_per_sector, = struct.unpack_from("<H", sector, 11)
    jump_ok = sector[0] in (0xEB, 0xE9)
    return jump_ok and bytes_per_sector == 512 and sector[21] >= 0xF0


def looks_like_cd(device: BlockDevice) -> bool:
    """An ISO9660 image (CD001 at 2048-byte LBA 16) with no MBR boot signature: a plain CD image. A hybrid ISO
    (isohybrid, grub-mkrescue) also boots as a hard disk, so it stays one unless asked for as a CD."""
    if device.size < 17 * CD_SECTOR:
        return False
    try:
        return device.pread(6, 16 * CD_SECTOR)[1:6] == b"CD001" and device.pread(SECTOR, 0)[510:512] != b"\x55\xaa"
    except DiskError:
        return False


class Drive:
    __slots__ = ("number", "device", "cylinders", "heads", "sectors", "floppy_type", "last_status",
                 "last_failed", "sector_size", "natural")

    def __init__(self, number: int, device: BlockDevice, cylinders: int, heads: int, sectors: int,
                 floppy_type: int = 0, last_status: int = 0, last_failed: bool = False,
                 sector_size: int = SECTOR, natural: int | None = None):
        self.number = number
        self.device = device
        self.cylinders = cylinders
        self.heads = heads
        self.sectors = sectors
        self.floppy_type = floppy_type  # CMOS type; 0 for hard disks
        self.last_status = last_status
        self.last_failed = last_failed  # 41h leaves AH=30h as last status with CF clear
        self.sector_size = sector_size  # 2048 for a CD, as iPXE presents an ISO9660 SAN disk
        self.natural = natural  # a SAN drive's natural number (iPXE's natural_drive); None for the PC's own disks

    def __repr__(self) -> str:
        return f"Drive({self.number:#04x}, {self.cylinders}/{self.heads}/{self.sectors}, sector_size={self.sector_size})"

    @property
    def is_floppy(self) -> bool:
        return self.number < 0x80

    @property
    def is_cdrom(self) -> bool:
        return self.sector_size == CD_SECTOR

    @property
    def capacity(self) -> int:
        return self.device.size // self.sector_size


def guess_hard_disk_geometry(device: BlockDevice) -> tuple[int, int, int]:
    """Heads and sectors from the partition table (iPXE's guess), else 255/63."""
    heads, sectors = 255, 63
    try:
        mbr = device.pread(SECTOR, 0)
    except DiskError:
        mbr = bytes(SECTOR)
    if mbr[510:512] == b"\x55\xaa":
        found_h = found_s = 0
        for i in range(4):
            entry = mbr[446 + 16 * i:462 + 16 * i]
            if entry[4] == 0:
                continue
            found_h = max(found_h, entry[5] + 1)
            found_s = max(found_s, entry[6] & 0x3F)
        if found_h and found_s:
            heads, sectors = found_h, found_s
    cylinders = max(1, min(1024, device.size // SECTOR // (heads * sectors)))
    return cylinders, heads, sectors


class Int13:
    # The drive whose connection is gone for good (its device's lost_connection), until a transfer from it works
    # again: a dead connection fails every request, and its outage is logged once, not on each guest retry.
    lost_drive: int | None = None
    _last_failure = ""
    # Called after every call as observer(dl, ah, drive or None, status, perf_counter at entry) when set
    # (--log int13, the gdb stub's disk log); `transfer` then holds the call's (lba, count, linear, write).
    observer = None
    transfer: tuple[int, int, int, bool] | None = None

    def __init__(self, machine):
        self.m = machine
        self.bda = Bda(machine.cpu)
        self.firmware: dict[int, Drive] = {}  # the PC's own disks, by BIOS number
        self.san: dict[int, Drive] = {}  # hooked SAN drives, in hook order (iPXE's for_each_sandev)
        self._synced: tuple[int, int] | None = None  # (40:10, 40:75) as last written: iPXE's cached counts
        self.functions = {
            0x00: self.reset,
            0x01: self.get_last_status,
            0x02: self.read_sectors,
            0x03: self.write_sectors,
            0x04: self.verify_sectors,
            0x08: self.get_parameters,
            # Seek, alternate reset, test ready, recalibrate, diagnostics: nothing to do on a SAN disk, and
            # old DOS disk drivers treat a failure here as a dead controller.
            0x0C: self.no_operation,
            0x0D: self.no_operation,
            0x10: self.no_operation,
            0x11: self.no_operation,
            0x14: self.no_operation,
            0x15: self.get_disk_type,
            0x16: self.get_change_line,
            0x41: self.extension_check,
            0x42: self.extended_read,
            0x43: self.extended_write,
            0x47: self.extended_seek,
            0x48: self.get_extended_parameters,
            0x4B: self.cdrom_status,
            0x4D: self.cdrom_read_catalog,
        }

    # -- drive tables ----------------------------------------------------------------
    def add_firmware_drive(self, number: int, device: BlockDevice) -> Drive:
        """One of the PC's own disks (a floppy below 80h), there from POST on, before any SAN hook."""
        if self.san:
            raise ValueError("the PC's own disks are attached before any SAN drive is hooked")
        if number in self.firmware:
            raise ValueError(f"BIOS drive {number:#04x} is already one of the PC's disks")
        if number & 0x7F == 0x7F or (number < 0x80 and number > 3):
            raise ValueError(f"the PC cannot have a disk at {number:#04x} (floppies 00h-03h, hard disks 80h-FEh)")
        drive = self._make_drive(number, device, "hdd")
        self.firmware[number] = drive
        return drive

    def devices(self) -> list[BlockDevice]:
        """The block devices behind the PC's own disks and the SAN drives, in that order."""
        return [drive.device for drive in (*self.firmware.values(), *self.san.values())]

    def add_drive(self, number: int, device: BlockDevice, media: str = "auto") -> Drive:
        """Hook `device` as a SAN drive at `number`, as iPXE's int13_hook (7Fh/FFh: its natural number).

        media: "hdd", "cd" (2048-byte sectors, El Torito boot) or "auto" (a CD if looks_like_cd)."""
        floppies, disks = self._counts_after_hooks()
        natural = (0x80 | disks) if number & 0x80 else floppies
        if number & 0x7F == 0x7F:
            number = natural
        if number in self.san:
            raise ValueError(f"BIOS drive {number:#04x} is already attached")
        drive = self._make_drive(number, device, media)
        drive.natural = natural
        self.san[number] = drive
        return drive

    def _make_drive(self, number: int, device: BlockDevice, media: str) -> Drive:
        if number >= 0x80 and (media == "cd" or (media == "auto" and looks_like_cd(device))):
            return Drive(number, device, 0, 0, 0, sector_size=CD_SECTOR)  # iPXE: no CHS for CDs
        if number < 0x80:
            c, h, s, ftype = floppy_geometry(device)
            return Drive(number, device, c, h, s, ftype)
        c, h, s = guess_hard_disk_geometry(device)
        return Drive(number, device, c, h, s)

    def route(self, number: int, ah: int = 0) -> Drive | None:
        """The disk a call for BIOS drive `number` reaches: iPXE's int13() loop over the SAN drives, in hook
        order, then the firmware, which sees a natural number as the SAN drive's number it was remapped to."""
        for san in self.san.values():
            if number == san.number:
                return san
            if number == san.natural:
                return self.firmware.get(san.number)
            if ah == 0x4B and number & 0x7F == 0x7F and san.is_cdrom:
                return san  # iPXE: 7Fh/FFh mean "the CD" (old ELTORITO.SYS)
        return self.firmware.get(number)

    # -- drive counts in the BDA ---------------------------------------------------------
    def _firmware_counts(self) -> tuple[int, int]:
        """(floppies, hard disks) as POST counts the PC's own disks: enough to cover every number."""
        floppies = max((n + 1 for n in self.firmware if n < 0x80), default=0)
        disks = max((n - 0x7F for n in self.firmware if n >= 0x80), default=0)
        return floppies, disks

    def _cover_san(self, floppies: int, disks: int) -> tuple[int, int]:
        """iPXE: each count raised to cover every SAN drive of its class and its natural number."""
        for san in self.san.values():
            required = (max(san.number, san.natural) & 0x7F) + 1
            if san.is_floppy:
                floppies = max(floppies, required)
            else:
                disks = max(disks, required)
        return floppies, disks

    def _counts_after_hooks(self) -> tuple[int, int]:
        return self._cover_san(*self._firmware_counts())

    def floppy_count(self) -> int:
        return self._counts_after_hooks()[0]

    def hard_disk_count(self) -> int:
        return self._counts_after_hooks()[1]

    def _bda_counts(self) -> tuple[int, int, int]:
        """(equipment word, floppies from its bits 0 and 6-7, hard disks at 40:75) as the BDA holds them."""
        equipment = self.bda.equipment_list_flags
        floppies = ((equipment >> 6) & 3) + 1 if equipment & 1 else 0
        return equipment, floppies, self.bda.hdcount

    def _write_bda_counts(self, equipment: int, floppies: int, disks: int) -> None:
        equipment &= ~0x00C1
        if floppies:
            equipment |= 0x0001 | (((floppies - 1) & 3) << 6)
        self.bda.equipment_list_flags = equipment
        self.bda.hdcount = disks
        self._synced = (equipment, disks)

    def _sync_counts(self) -> None:
        """iPXE's int13_sync_num_drives: the BDA's counts, never lowered, raised to cover the SAN drives."""
        equipment, floppies, disks = self._bda_counts()
        self._write_bda_counts(equipment, *self._cover_san(floppies, disks))

    def _check_counts(self) -> None:
        """iPXE's int13_check_num_drives, on every call: an AMI BIOS reset 40:75 and bootmgr found no disk."""
        equipment, _, disks = self._bda_counts()
        if (equipment, disks) != self._synced:
            self._sync_counts()

    # -- POST ------------------------------------------------------------------------
    def post(self) -> None:
        """The BDA counts, CMOS floppy types and hard disk parameter tables as POST leaves them for the PC's
        own disks, then the SAN hooks' raised counts (iPXE hooks after POST)."""
        equipment, _, _ = self._bda_counts()
        self._write_bda_counts(equipment, *self._firmware_counts())
        if self.san:
            self._sync_counts()
        types = [d.floppy_type if d else 0 for d in (self.route(0x00), self.route(0x01))]
        self.m.cmos.ram[0x10] = (types[0] << 4) | types[1]
        self.write_fdpt()

    def write_fdpt(self) -> None:
        """Fixed disk parameter tables for int 41h/46h (drive 80h/81h, standard format)."""
        table = bytearray(32)
        for i in range(2):
            drive = self.route(0x80 + i)
            if drive:
                struct.pack_into("<HBHHBBBHBB", table, 16 * i, min(drive.cylinders, 0xFFFF),
                                 drive.heads & 0xFF, 0, 0xFFFF, 0, 0x08 if drive.heads > 8 else 0,
                                 0, 0, 0, drive.sectors)
        self.m.cpu.write(rom.ROM_BASE + rom.FDPT, table)

    # -- dispatcher ----------------------------------------------------------------
    def int13(self) -> None:
        """The dispatcher: route DL, call the handler for AH with the drive, and give its return (see
        bios/service.py) to the caller: AH, CF and IF in the frame, the BDA status, the drive's last status."""
        cpu = self.m.cpu
        ah = cpu.get("ah")
        dl = cpu.get("dl")
        observer = self.observer
        if observer is not None:
            self.transfer = None
            started = time.perf_counter()
        if self.san:
            self._check_counts()
        drive = self.route(dl, ah)
        handler = self.functions.get(ah)
        if drive is None:
            status = self._absent_drive(ah)
        elif handler is None:
            status = STATUS_INVALID
        else:
            status = handler(drive)
        if status is None:  # the handler set AH itself (e.g. 15h, 41h); iPXE keeps that AH as last status
            status = 0
            last = cpu.get("ah")
        else:
            cpu.set("ah", status)
            last = status
        if drive is not None and ah != 0x01:
            drive.last_status, drive.last_failed = last, bool(status)
        if dl < 0x80:
            self.bda.floppy_last_status = status
        else:
            self.bda.disk_last_status = status
        cpu.set_frame_flags(FLAG_IF | (FLAG_CF if status else 0), 0 if status else FLAG_CF)
        self.m.irq_window()  # a disk transfer takes time with interrupts on (SeaBIOS: yield())
        if observer is not None:
            observer(dl, ah, drive, status, started)

    def _absent_drive(self, ah: int) -> int:
        cpu = self.m.cpu
        if ah == 0x08:  # the drive count even for a missing drive: iPXE's wrapper sets DL on chained calls too
            cpu.set("dl", self._drive_count(cpu.get("dl")))
        if ah == 0x15 and cpu.get("dl") >= 0x80:
            cpu.set("ah", 0)  # "no such drive"
            return None
        return STATUS_INVALID

    # -- helpers -------------------------------------------------------------------
    def _drive_count(self, dl: int) -> int:
        """AH=08h's DL: the BDA's count of DL's class. With a SAN hook the counts were re-synced at the start
        of the call, so this is iPXE's num_drives/num_fdds; without one it is what a BIOS reports (SeaBIOS)."""
        _, floppies, disks = self._bda_counts()
        return disks if dl & 0x80 else floppies

    def _transfer(self, drive: Drive, lba: int, count: int, linear: int, write: bool) -> int:
        self.transfer = (lba, count, linear, write)
        if count == 0:
            return STATUS_OK
        if lba + count > drive.capacity:
            return STATUS_READ_ERROR
        cpu = self.m.cpu
        size = drive.sector_size
        end = linear + count * size
        if end > cpu.memory_size:
            return STATUS_BOUNDARY
        try:
            if write:
                if drive.device.read_only:
                    return STATUS_WRITE_PROTECTED
                drive.device.pwrite(cpu.read(linear, count * size), lba * size)
            else:
                cpu.write(linear, drive.device.pread(count * size, lba * size))
        except DiskReadOnlyError:
            return STATUS_WRITE_PROTECTED
        except (DiskError, NbdError) as e:
            # As iPXE: only a final failure gets here (the client has spent its reconnect budget, or the server
            # failed the request), and the guest hears 04h, for writes too, and prints its own error.
            self._disk_failed(drive, lba, count, write, e)
            return STATUS_READ_ERROR
        if drive.number == self.lost_drive:
            self.lost_drive = None
            self._last_failure = ""
        return STATUS_OK

    def _disk_failed(self, drive: Drive, lba: int, count: int, write: bool, error: Exception) -> None:
        # A dead connection fails every later request, in words that change as the server goes from resetting
        # to refusing connections: say it once per outage, not on each guest retry.
        still_down = isinstance(error, NbdError) and self.lost_drive == drive.number
        if not still_down and str(error) != self._last_failure:
            _log().warning("nbdboot: int13: drive %#04x %s of %d sectors at LBA %d failed: %s", drive.number,
                        "write" if write else "read", count, lba, error)
            self._last_failure = str(error)
        if isinstance(error, NbdError):
            self.lost_drive = drive.number

    def _chs(self, drive: Drive) -> int | None:
        cpu = self.m.cpu
        cl, ch, dh = cpu.get("cl"), cpu.get("ch"), cpu.get("dh")
        cylinder = ((cl & 0xC0) << 2) | ch
        sector = cl & 0x3F
        if cylinder >= drive.cylinders:
            return None
        if dh >= drive.heads or sector < 1 or sector > drive.sectors:
            return None
        return (cylinder * drive.heads + dh) * drive.sectors + sector - 1

    # -- functions -----------------------------------------------------------------
    def reset(self, drive: Drive) -> int:
        """INT 13,00 - Reset disk system. Entry: DL drive. Return: status 00h, or 05h when the reopen failed.

        As iPXE's sandev_reset: close and reopen the connection to the disk, so a guest
        that resets after errors gets a fresh NBD session (Windows MBR code retries so)."""
        try:
            drive.device.reset()
        except Exception as e:  # noqa: BLE001 - any failure to reopen is the guest's 05h
            _log().info("int 13h reset of drive %#04x failed: %s", drive.number, e)
            return STATUS_RESET_FAILED
        return STATUS_OK

    def no_operation(self, drive: Drive) -> int:
        """INT 13,0C/0D/10/11/14 - Seek, alternate reset, test ready, recalibrate, diagnostics.
        Entry: DL drive. Return: status 00h, no other register changed."""
        return STATUS_OK

    def get_last_status(self, drive: Drive) -> int | None:
        """INT 13,01 - Get status of last operation. Entry: DL drive.
        Return: AH = the drive's last status; CF set if that call failed (iPXE: 41h's AH=30h is a
        last status with CF clear). Not itself recorded as the last status."""
        if drive.last_failed:
            return drive.last_status
        self.m.cpu.set("ah", drive.last_status)
        return None

    def _rw_chs(self, drive: Drive, write: bool) -> int:
        cpu = self.m.cpu
        count = cpu.get("al")
        lba = None if drive.is_cdrom else self._chs(drive)
        if lba is None or count == 0 or count > 128:
            return STATUS_INVALID
        linear = (cpu.get("es") << 4) + cpu.get("bx")
        status = self._transfer(drive, lba, count, linear, write)
        if status:
            cpu.set("al", 0)
        return status

    def read_sectors(self, drive: Drive) -> int:
        """INT 13,02 - Read sectors (CHS). Entry: AL count (1-128), CH cylinder bits 0-7, CL bits 0-5 sector
        (1-based), CL bits 6-7 cylinder bits 8-9, DH head, DL drive, ES:BX buffer.
        Return: AL unchanged on success, 0 on failure; status 00h, 01h (bad CHS or count, a CD), 04h (past
        the end, I/O error), 09h (buffer beyond memory)."""
        return self._rw_chs(drive, write=False)

    def write_sectors(self, drive: Drive) -> int:
        """INT 13,03 - Write sectors (CHS). Entry and return as 02h; also status 03h on a read-only disk."""
        return self._rw_chs(drive, write=True)

    def verify_sectors(self, drive: Drive) -> int:
        """INT 13,04 - Verify sectors. Entry: CX, DH, DL as 02h. Return: status 00h, or 01h for a bad CHS."""
        return STATUS_OK if self._chs(drive) is not None else STATUS_INVALID

    def get_parameters(self, drive: Drive) -> int:
        """INT 13,08 - Get drive parameters. Entry: DL drive.
        Return: CH max cylinder bits 0-7, CL bits 0-5 sectors per track and bits 6-7 max cylinder bits 8-9,
        DH max head, DL number of drives of DL's class (40:10/40:75), AL 0; floppies also BX = CMOS drive
        type, ES:DI = the diskette parameter table, AX = 0. Status 00h, or 01h for a CD (no CHS).
        For a drive that is not there, DL = the count all the same (_absent_drive)."""
        if drive.is_cdrom:
            return STATUS_INVALID  # iPXE: no CHS for non-512-byte sectors
        cpu = self.m.cpu
        max_cyl = drive.cylinders - 1
        cpu.set("ch", max_cyl & 0xFF)
        cpu.set("cl", ((max_cyl >> 2) & 0xC0) | drive.sectors)
        cpu.set("dh", drive.heads - 1)
        if drive.is_floppy:
            cpu.set("ax", 0)
            cpu.set("bx", drive.floppy_type)
            cpu.set("dl", self._drive_count(0x00))
            cpu.set("es", rom.ROM_SEGMENT)
            cpu.set("di", rom.DISKETTE_PARAMS)
        else:
            cpu.set("al", 0)
            cpu.set("dl", self._drive_count(0x80))
        return STATUS_OK

    def get_disk_type(self, drive: Drive) -> None:
        """INT 13,15 - Get disk type. Entry: DL drive.
        Return (None: CF clear, AH kept as last status): AH 01h for a floppy (no change-line); AH 03h for a
        hard disk with CX:DX = its sector count (up to FFFFFFFFh). A missing hard disk: AH 00h, CF clear."""
        cpu = self.m.cpu
        if drive.is_floppy:
            cpu.set("ah", 0x01)  # floppy without change-line: DOS then never trusts a stale "unchanged"
            return None
        count = min(drive.capacity, 0xFFFFFFFF)
        cpu.set("ah", 0x03)
        cpu.set("cx", count >> 16)
        cpu.set("dx", count & 0xFFFF)
        return None

    def get_change_line(self, drive: Drive) -> int:
        """INT 13,16 - Detect media change. Entry: DL drive. Return: status 06h (changed) for a floppy,
        01h for a hard disk."""
        # Floppies answer "changed" as SeaBIOS does: DOS rereads the FAT instead of trusting a cache.
        return STATUS_MEDIA_CHANGED if drive.is_floppy else STATUS_INVALID

    def extension_check(self, drive: Drive):
        """INT 13,41 - Extensions installation check. Entry: BX 55AAh, DL drive.
        Return (None: CF clear): AH 30h (EDD 3.0), BX AA55h, CX 000Dh (fixed-disk access, EDD, 64-bit
        addresses). Status 01h for a floppy or another BX."""
        cpu = self.m.cpu
        if drive.is_floppy or cpu.get("bx") != 0x55AA:
            return STATUS_INVALID
        cpu.set("bx", 0xAA55)
        cpu.set("cx", 0x000D)  # fixed-disk access, EDD, 64-bit addresses
        cpu.set("ah", 0x30)
        return None

    def _dap(self):
        cpu = self.m.cpu
        addr = (cpu.get("ds") << 4) + cpu.get("si")
        return addr, cpu.read(addr, DAP_SIZE)

    def _extended_rw(self, drive: Drive, write: bool) -> int:
        if drive.is_floppy:
            return STATUS_INVALID
        addr, dap = self._dap()
        # iPXE's int13_disk_address: the 64-bit flat buffer at 10h and the long count at 18h are read whatever
        # the size byte says, as iPXE copies the whole structure. The flat buffer is used only for FFFF:FFFF
        # (EDD-3); iPXE also takes it for count FFh, which sends an EDD-4 long-count read with a seg:off buffer
        # (conformance 6.10) to linear 0 over the interrupt table.
        size, _, count, offset, segment, lba, flat, long_count = struct.unpack_from("<BBBxHHQQI", dap)
        if size < 0x10 or size > DAP_SIZE:
            return STATUS_INVALID
        if (segment, offset) == (0xFFFF, 0xFFFF):
            linear = flat
        else:
            linear = (segment << 4) + offset
        if count == 0xFF:
            count = long_count
        elif count > 0x7F:
            return STATUS_INVALID
        status = self._transfer(drive, lba, count, linear, write)
        if status:
            self.m.cpu.write8(addr + 2, 0)
        return status

    def extended_read(self, drive: Drive) -> int:
        """INT 13,42 - Extended read. Entry: DL drive, DS:SI disk address packet (size 10h-20h, count at +2,
        buffer seg:off at +4, LBA at +8; FFFF:FFFF takes the 64-bit flat buffer at +10h, count FFh the long
        count at +18h). Return: status 00h, 01h (floppy, bad packet), 04h, 09h; on failure the packet's
        count is 0."""
        return self._extended_rw(drive, write=False)

    def extended_write(self, drive: Drive) -> int:
        """INT 13,43 - Extended write. Entry and return as 42h (AL, the verify flag, is ignored); also 03h."""
        return self._extended_rw(drive, write=True)

    def extended_seek(self, drive: Drive) -> int:
        """INT 13,47 - Extended seek. Entry: DL drive, DS:SI packet. Return: status 00h, or 01h for a floppy."""
        return STATUS_INVALID if drive.is_floppy else STATUS_OK

    def get_extended_parameters(self, drive: Drive) -> int:
        """INT 13,48 - Get extended parameters. Entry: DL drive, DS:SI buffer whose first word is its size.
        Return: the buffer filled (26 bytes: size, flags, C/H/S, sector count, sector size; 30 with the
        EDD configuration pointer FFFF:FFFF when it has room); status 00h, or 01h for a size below 26."""
        cpu = self.m.cpu
        addr = (cpu.get("ds") << 4) + cpu.get("si")
        bufsize = cpu.read16(addr)
        if bufsize < 26:
            return STATUS_INVALID
        flags = 0x01
        if drive.is_cdrom or (drive.cylinders < 1024 and drive.capacity <= 15_482_880):
            flags |= 0x02  # iPXE marks CHS valid on CDs too, with C/H/S 0
        params = struct.pack("<HHIIIQH", 26, flags, drive.cylinders, drive.heads, drive.sectors,
                             drive.capacity, drive.sector_size)
        if bufsize >= 30:
            params = struct.pack("<H", 30) + params[2:] + struct.pack("<HH", 0xFFFF, 0xFFFF)
        cpu.write(addr, params)
        return STATUS_OK

    def cdrom_status(self, drive: Drive) -> int:
        """INT 13,4B - Get El Torito emulation status. Entry: AL 01h, DL drive (7Fh/FFh: the CD), DS:SI buffer.
        Return: status 00h or 01h (not a CD).

        4Bh: the 13h-byte specification packet, as iPXE fills it (size, no emulation, drive; the rest 0).
        Hard disks fail it: GRUB takes a disk that answers for a CD."""
        if not drive.is_cdrom:
            return STATUS_INVALID
        cpu = self.m.cpu
        packet = bytearray(0x13)
        packet[0], packet[1], packet[2] = 0x13, 0x00, drive.number
        cpu.write((cpu.get("ds") << 4) + cpu.get("si"), bytes(packet))
        return STATUS_OK

    def cdrom_read_catalog(self, drive: Drive) -> int:
        """INT 13,4D - Read the El Torito boot catalog. Entry: DL drive, DS:SI command packet.
        Return: status 00h, 01h (not a CD, no catalog), 04h.

        4Dh: the El Torito boot catalog's sectors (command packet at DS:SI: size, count, buffer, first)."""
        if not drive.is_cdrom:
            return STATUS_INVALID
        cpu = self.m.cpu
        # The buffer is a 32-bit physical address, as iPXE reads it (int13_cdrom_boot_catalog_command).
        _, count, buffer, first = struct.unpack_from("<BBIH", cpu.read((cpu.get("ds") << 4) + cpu.get("si"), 8))
        catalog = eltorito_catalog_lba(drive.device)
        if catalog is None:
            return STATUS_INVALID
        return self._transfer(drive, catalog + first, count, buffer, write=False)


def eltorito_catalog_lba(device: BlockDevice) -> int | None:
    """The boot catalog's 2048-byte LBA from the El Torito boot record volume descriptor (LBA 17)."""
    record = device.pread(CD_SECTOR, 17 * CD_SECTOR)
    if record[0] != 0 or record[1:6] != b"CD001" or not record[7:30].startswith(b"EL TORITO SPECIFICATION"):
        return None
    return struct.unpack_from("<I", record, 0x47)[0]


def eltorito_boot_image(device: BlockDevice) -> tuple[int, bytes] | None:
    """(load segment, boot image) of the catalog's initial entry, no emulation only, as iPXE's eltorito_load."""
    lba = eltorito_catalog_lba(device)
    if lba is None:
        return None
    catalog = device.pread(CD_SECTOR, lba * CD_SECTOR)
    entry = catalog[32:64]
    if catalog[0] != 0x01 or entry[0] != 0x88 or entry[1] != 0:
        return None
    segment, count, rba = struct.unpack_from("<H", entry, 2)[0], *struct.unpack_from("<HI", entry, 6)
    length = -(-count * SECTOR // CD_SECTOR) * CD_SECTOR  # whole CD sectors, as a CD drive reads
    return segment or 0x07C0, device.pread(length, rba * CD_SECTOR)[:count * SECTOR]
