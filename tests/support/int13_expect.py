"""What each BIOS answers to bootimages/conformance/conformance.asm, case by case.

COMMON holds the answers iPXE's int13.c and SeaBIOS share (their sources agree, and QEMU+SeaBIOS shows it); SEABIOS the answers only SeaBIOS gives (observed under QEMU 7.2 / SeaBIOS
1.16.2); NBDBOOT the iPXE-style answers nbdboot is to give where it differs (docs/int13.md has the reasons).
`expected(image, bios)` merges them for one BIOS and fills in the data checksums from the image file.

An expected value is an int, or a callable taking the reported value and returning True when it is acceptable.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from .qemuref import checksum

SECTOR = 512
FILLER = 0xCC
DISK_SECTORS = 20160
C, H, S = 20, 16, 63


class Data:
    """The checksum of `count` sectors of the disk image from `lba` (filled in by expected())."""

    def __init__(self, lba: int, count: int):
        self.lba, self.count = lba, count


class Filler:
    """The checksum of `count` sectors of untouched buffer: the read did not happen."""

    def __init__(self, count: int):
        self.count = count


def not_(value: int):
    return lambda v: v != value


# Writes put the program's first sector (LBA 0) at LBA 126 (3.13) and LBA 500 (6.13).
WRITTEN_SECTOR = Data(0, 1)

COMMON: dict[str, dict] = {
    "10.1": {"EDX": lambda v: v & 0xFF == 0x80, "CS": 0, "SIG": 0xAA55, "HDCOUNT": lambda v: v >= 1},
    "1.1": {"CF": 0, "AH": 0, "AL": 0, "DX": 0x0F01},
    "1.3": {"CF": 1},
    "1.4": {"CF": 0, "AH": 0},
    "2.1": {"CF": 0, "AH": 0},
    "2.2": {"CF": 0, "AH": 0, "BDA74": 0},
    "2.3": {"CF": 1, "AH": 1, "BDA74": 1},
    "3.1": {"CF": 0, "AH": 0, "AL": 1, "SUM": Data(63, 1)},
    "3.2": {"CF": 0, "AH": 0, "AL": 1, "SUM": Data(DISK_SECTORS - 1, 1)},
    "3.3": {"CF": 1, "AH": 1, "SUM": Filler(1)},
    "3.4": {"CF": 1, "AH": 1, "SUM": Filler(1)},
    "3.5": {"CF": 1, "AH": 1, "SUM": Filler(1)},
    "3.7": {"CF": 0, "AH": 0, "AL": 0x80, "SUM": Data(64, 128)},
    "3.9": {"CF": 0, "AH": 0, "AL": 2, "SUM": Data(251, 2)},
    "3.10": {"CF": 0, "AH": 0, "AL": 1, "SUM": Data(1008, 1)},
    "3.11": {"CF": 1, "AH": 1, "SUM": Filler(1)},
    "3.12": {"CF": 0, "AH": 0, "AL": 2, "LINEAR": Data(64, 2), "WRAPPED": Filler(1)},
    "3.13": {"CF": 0, "AH": 0, "AL": 1},
    "3.14": {"CF": 0, "AH": 0, "AL": 1, "SUM": WRITTEN_SECTOR},
    "3.16": {"CF": 1},  # the server fails LBA 700 with EIO
    "3.17": {"CF": 1},
    "3.18": {"CF": 1},  # the server refuses the write (EPERM)
    "5.1": {"CF": 0, "AH": 0x30, "BX": 0xAA55, "DL": 0x80},
    "5.3": {"CF": 1, "AH": 1},
    "6.1": {"CF": 0, "AH": 0, "COUNT": 1, "SUM": Data(200, 1)},
    "6.2": {"CF": 0, "AH": 0, "COUNT": 1, "SUM": Data(202, 1)},
    "6.3": {"CF": 0, "AH": 0, "COUNT": 0, "SUM": Filler(1)},
    "6.4": {"CF": 0, "AH": 0, "COUNT": 0x7F, "SUM": Data(300, 127)},
    "6.6": {"CF": 1, "SUM": Filler(1)},
    "6.7": {"CF": 1},
    "6.9": {"CF": 0, "AH": 0, "COUNT": 1, "SUM": Data(DISK_SECTORS - 1, 1)},
    "6.12": {"CF": 0, "AH": 0, "COUNT": 1, "SUM": Data(205, 1)},
    "6.13": {"CF": 0, "AH": 0, "COUNT": 1},
    "6.14": {"CF": 0, "AH": 0, "COUNT": 1, "SUM": WRITTEN_SECTOR},
    "6.16": {"CF": 0, "AH": 0},
    "6.17": {"CF": 1, "COUNT": 0},  # nothing claimed transferred after a failed read
    "6.18": {"CF": 1, "COUNT": 0},  # nor after a refused write
    "7.1": {"CF": 1, "AH": 1, "WRITTEN": 2},
    "7.2": {"CF": 0, "AH": 0, "SIZE": 0x1A, "CYL": C, "HEADS": H, "SPT": S, "SECTORS": DISK_SECTORS,
            "SECTORSHI": 0, "BPS": 512, "WRITTEN": 0x1A},
    "7.3": {"CF": 0, "AH": 0, "SIZE": 0x1E, "SECTORS": DISK_SECTORS, "WRITTEN": 0x1E},
    "7.4": {"CF": 0, "AH": 0, "SIZE": 0x1E, "SECTORS": DISK_SECTORS},
    "7.5": {"CF": 0, "AH": 0, "SIZE": 0x1E, "SECTORS": DISK_SECTORS},
    "8.1": {"CF": 0, "AH": 3},
    "8.2": {"CF": 1, "AH": 1},
    "9.2": {"CF": 1, "AH": 1},
    "12.16": {"CF": 1, "AH": 1},
    "12.17": {"CF": 1, "AH": 1},
    "12.60": {"CF": 1, "AH": 1},
    "11.1": {"EAX": not_(0)},
    "11.2": {"CF": 0, "EAX": 0x534D4150, "ECX": 20, "BASE": 0, "TYPE": 1},
    "11.3": {"A20": 1, "TIMEOUT": 0},  # the Windows MBR's 8042 A20 sequence works and never stalls
    "11.4": {"ZF": 1},  # no key waiting
}

SEABIOS: dict[str, dict] = {
    "10.1": {"EAX": 0xAA55},
    "1.1": {"CX": ((C - 2) << 8) | S},  # one cylinder reserved
    "1.2": {"CF": 1, "AH": 1, "DL": 0x81},  # absent drive; DL untouched
    "1.3": {"AH": 1},
    "1.4": {"DL": 0, "HDCOUNT": 0},  # reports and keeps the clobbered count
    "2.4": {"CF": 0, "AH": 0},
    "3.6": {"CF": 1, "AH": 1, "AL": 0, "SUM": Filler(1)},
    "3.8": {"CF": 1, "AH": 1, "AL": 0x81, "SUM": Filler(129)},
    "3.15": {"CF": 0, "AH": 0},
    "3.16": {"AH": 0x0C, "AL": 0},  # the ATA driver's error code
    "3.17": {"AH": 0x0C, "BDA74": 0x0C},
    "3.18": {"AH": 0x0C, "AL": 0},
    "5.1": {"CX": 0x0007},
    "5.2": {"CF": 0, "AH": 0x30, "BX": 0xAA55, "CX": 0x0007},  # BX not checked
    "5.4": {"CF": 0, "IF": 0},
    "6.5": {"CF": 0, "AH": 0, "COUNT": 0x80, "SUM": Data(300, 128)},
    "6.6": {"AH": 1, "COUNT": 1},  # range check before the driver: count kept
    "6.7": {"AH": 0x0C, "COUNT": 1},  # ATA error at the end of the disk
    "6.8": {"CF": 0, "AH": 0, "COUNT": 1, "SUM": Data(204, 1)},  # DAP size not checked
    "6.10": {"CF": 1, "AH": 9, "COUNT": 0, "SUM": Filler(2)},  # > 64 KiB
    "6.11": {"CF": 0, "AH": 0, "FLAT": lambda v: True},  # FFFF:FFFF taken as seg:off; see the test
    "6.15": {"CF": 0, "AH": 0},
    "6.17": {"AH": 0x0C},
    "6.18": {"AH": 0x0C},
    "7.2": {"FLAGS": 0x0002},
    "7.3": {"FLAGS": 0x0002, "DPTE": not_(0xFFFFFFFF)},  # ATA: a real DPTE
    "7.4": {"KEY": 0xBEDD, "WRITTEN": 0x42},  # Phoenix 36-byte device path
    "7.5": {"KEY": 0xBEDD, "WRITTEN": 0x4A},  # T13 44-byte device path
    "8.1": {"CX": ((C - 1) * H * S) >> 16, "DX": ((C - 1) * H * S) & 0xFFFF},
    "9.1": {"CF": 0, "AH": 0, "PSIZE": 0x13, "PMEDIA": 0, "WRITTEN": 0x13},  # 4Bh succeeds for any drive
    "12.09": {"CF": 0, "AH": 0},
    "12.0C": {"CF": 0, "AH": 0},
    "12.0D": {"CF": 0, "AH": 0},
    "12.10": {"CF": 0, "AH": 0},
    "12.11": {"CF": 0, "AH": 0},
    "12.14": {"CF": 0, "AH": 0},
    "12.45": {"CF": 0, "AH": 0},
    "12.49": {"CF": 0, "AH": 0},
    "12.4E": {"CF": 0, "AH": 0},
}

# iPXE's answers, with nbdboot's decisions where docs/int13.md takes SeaBIOS's side: CHS argument checks, and the functions
# 04h, 0Ch, 0Dh, 10h, 11h, 14h. docs/int13.md marks which of these are decided and which are to be confirmed.
NBDBOOT: dict[str, dict] = {
    "10.1": {"EAX": 0, "EBX": 0, "ECX": 0, "ESI": 0, "EDI": 0, "EBP": 0, "DS": 0, "ES": 0, "FS": 0, "GS": 0},
    "1.1": {"CX": ((C - 1) << 8) | S},  # no reserved cylinder
    "1.2": {"CF": 1, "AH": 1},  # chained to the BIOS: no such disk
    "1.4": {"DL": 1, "HDCOUNT": 1},  # int13_check_num_drives() re-syncs 40:75 on every call
    "2.4": {"CF": 0, "AH": 0x30},  # last status is 41h's AH
    "3.6": {"CF": 1, "AH": 1, "SUM": Filler(1)},  # CHS with SeaBIOS's argument checks (iPXE: no check)
    "3.8": {"CF": 1, "AH": 1, "SUM": Filler(129)},  # likewise AL > 128
    "3.15": {"CF": 0, "AH": 0},  # 04h verify added (SeaBIOS)
    "3.16": {"AH": 4},  # iPXE's read error, after the client's retries
    "3.17": {"AH": 4, "BDA74": 4},
    "3.18": {"AH": 4},  # iPXE reports write failures as 04h too
    "5.1": {"CX": 0x000D},
    "5.2": {"CF": 1, "AH": 1},
    "5.4": {"CF": 0, "IF": 1},  # IF set on return from disk calls
    # count 80h-FEh invalid; the program sums all 128 sectors of its buffer for 6.5 (EXT_CASE's 5th argument)
    "6.5": {"CF": 1, "AH": 1, "SUM": Filler(128)},
    "6.6": {"AH": 4, "COUNT": 0},
    "6.7": {"AH": 4, "COUNT": 0},
    "6.8": {"CF": 1, "AH": 1, "SUM": Filler(1)},  # DAP smaller than 16 bytes
    "6.10": {"CF": 0, "AH": 0, "COUNT": 0xFF, "SUM": Data(400, 2)},  # long count
    "6.11": {"CF": 0, "AH": 0, "COUNT": 1, "FLAT": Data(201, 1)},  # 64-bit flat buffer
    "6.15": {"CF": 1, "AH": 1},  # 44h verify: unsupported
    "6.17": {"AH": 4},
    "6.18": {"AH": 4},
    "7.2": {"FLAGS": 0x0003},
    "7.3": {"FLAGS": 0x0003, "DPTE": 0xFFFFFFFF},
    "7.4": {"FLAGS": 0x0003, "DPTE": 0xFFFFFFFF, "WRITTEN": 0x1E, "KEY": 0xCCCC},  # no device path for NBD
    "7.5": {"FLAGS": 0x0003, "DPTE": 0xFFFFFFFF, "WRITTEN": 0x1E, "KEY": 0xCCCC},
    "8.1": {"CX": DISK_SECTORS >> 16, "DX": DISK_SECTORS & 0xFFFF},  # the exact sector count
    "9.1": {"CF": 1, "AH": 1, "WRITTEN": 0},  # 4Bh fails on a hard disk (GRUB)
    "12.09": {"CF": 1, "AH": 1},
    "12.0C": {"CF": 0, "AH": 0},
    "12.0D": {"CF": 0, "AH": 0},
    "12.10": {"CF": 0, "AH": 0},
    "12.11": {"CF": 0, "AH": 0},
    "12.14": {"CF": 0, "AH": 0},
    "12.45": {"CF": 1, "AH": 1},
    "12.49": {"CF": 1, "AH": 1},
    "12.4E": {"CF": 1, "AH": 1},
}


# ---- bootimages/conformance/cdconf.asm: the CD cases, from cdconf.iso (2048-byte sectors) ------------------------

CD_SECTOR = 2048


def cd_data(lba: int, count: int = 1) -> Data:
    return Data(lba * 4, count * 4)


class Catalog:
    """The checksum of the El Torito boot catalog's first sector (its LBA read from the boot record at LBA 17)."""


CD_COMMON: dict[str, dict] = {
    "9.10": {"DS": 0, "ES": 0},
    "9.11": {"CF": 0, "AH": 0, "PSIZE": 0x13, "PMEDIA": 0},
    "9.12": {"CF": 0, "AH": 0, "PSIZE": 0x13, "PMEDIA": 0},
    "9.13": {"CF": 0, "AH": 0x30, "BX": 0xAA55},
    "9.14": {"CF": 0, "AH": 0, "COUNT": 1, "SUM": cd_data(16), "AFTER": Filler(1)},
    "9.15": {"CF": 0, "AH": 0, "SIZE": 0x1A, "BPS": CD_SECTOR},
    "9.17": {"CF": 1, "AH": 1},
    "9.18": {"CF": 1, "AH": 1},
    "9.20": {"CF": 0, "AH": 0},
}

CD_SEABIOS: dict[str, dict] = {
    "9.10": {"EAX": 0xAA55, "EDX": 0xE0, "CS": 0},  # CDs are E0h+n, entered at 0000:7C00
    "9.11": {"PDRIVE": 0xE0, "PLBA": lambda v: v > 17, "PLOADSEG": 0x07C0, "PCOUNT": 8},  # the real boot entry
    "9.12": {"PDRIVE": 0xE0},  # 4Bh answers for any DL
    "9.13": {"CX": 0x0007},
    "9.15": {"FLAGS": 0x0074, "SECTORS": 0xFFFFFFFF},  # removable: no sector count
    "9.16": {"CF": 1, "AH": 1, "SUM": Filler(4)},  # no 4Dh
    "9.19": {"CF": 0, "AH": 1},  # no change-line, no size
}

CD_NBDBOOT: dict[str, dict] = {
    "9.10": {"EAX": 0, "EDX": 0x80, "CS": 0x07C0},  # the SAN drive number; El Torito entered at 07C0:0000
    "9.11": {"PDRIVE": 0x80, "PLBA": 0, "PLOADSEG": 0, "PCOUNT": 0},  # iPXE fills only size, media, drive
    "9.12": {"PDRIVE": 0x80},  # DL=7Fh claimed by the CD
    "9.13": {"CX": 0x000D},
    "9.15": {"FLAGS": 0x0003, "SECTORS": lambda v: v > 16},  # the 2048-byte sector count
    "9.16": {"CF": 0, "AH": 0, "SUM": Catalog()},
    "9.19": {"CF": 0, "AH": 3},
}

# ---- bootimages/conformance/fdconf.asm: the floppy cases, on a 1.44M and a 360K floppy ---------------------------

FD_COMMON_1440: dict[str, dict] = {
    "8.10": {"EDX": 0},
    "8.11": {"CF": 0, "AH": 0, "BX": 0x0004, "CX": (79 << 8) | 18, "DX": 0x0101},  # 1.44M, 80/2/18, one floppy
    "8.12": {"SPT": 18},
    "8.13": {"CF": 0, "AH": 1},  # floppy without change-line reporting
    "8.14": {"CF": 1, "AH": 1},  # no EDD on floppies
    "8.15": {"CF": 1, "AH": 1},
    "8.18": {"CF": 0, "AH": 0, "SUM": Data(2879, 1)},
    "8.19": {"CF": 1, "AH": 1},
    "8.20": {"CF": 0, "AH": 0, "AL": 2, "SUM": Data(17, 2)},  # across a head
    "8.21": {"CF": 0, "AH": 0, "SUM": Data(36, 1), "SPT": 18, "HEADS": 2, "CYLS": 80},
}

FD_SEABIOS_1440: dict[str, dict] = {
    "8.10": {"EAX": 0xAA55},
    "8.12": {"WRITABLE": 0},  # the INT 1Eh table is in the read-only BIOS segment
    "8.16": {"CF": 1, "AH": 1},  # no 48h for floppies
    "8.17": {"CF": 1, "AH": 6},  # change line: always "changed"
}

FD_NBDBOOT_1440: dict[str, dict] = {
    "8.10": {"EAX": 0},
    "8.12": {"WRITABLE": 0xFF},  # FreeDOS patches byte 4 of the INT 1Eh table: it must be RAM
    "8.16": {"CF": 0, "AH": 0},  # iPXE allows 48h on floppies
    "8.17": {"CF": 1, "AH": 6},  # 16h for floppies as SeaBIOS
}

# QEMU puts a 360K image in a 1.2M drive: SeaBIOS reports the drive's 80/2/15 while the controller reads the
# medium's 40/2/9, so only the first cylinders agree. nbdboot must report 40/2/9 (iPXE's table lacks 360K).
FD_COMMON_360: dict[str, dict] = {
    "8.10": {"EDX": 0},
    "8.14": {"CF": 1, "AH": 1},
    "8.15": {"CF": 1, "AH": 1},
    "8.21": {"CF": 0, "AH": 0, "SUM": Data(18, 1)},
}

FD_SEABIOS_360: dict[str, dict] = {
    "8.11": {"CF": 0, "AH": 0, "BX": 0x0002, "CX": (79 << 8) | 15, "DX": 0x0101},
    "8.18": {"CF": 1, "AH": 0x20},
}

FD_NBDBOOT_360: dict[str, dict] = {
    "8.11": {"CF": 0, "AH": 0, "BX": 0x0001, "CX": (39 << 8) | 9, "DX": 0x0101},
    "8.18": {"CF": 0, "AH": 0, "SUM": Data(719, 1)},
    "8.20": {"CF": 0, "AH": 0, "AL": 2, "SUM": Data(8, 2)},
    "8.21": {"SPT": 9, "HEADS": 2, "CYLS": 40},
}

PROGRAMS = {
    "conformance": (COMMON, SEABIOS, NBDBOOT),
    "cdconf": (CD_COMMON, CD_SEABIOS, CD_NBDBOOT),
    "fdconf1440": (FD_COMMON_1440, FD_SEABIOS_1440, FD_NBDBOOT_1440),
    "fdconf360": (FD_COMMON_360, FD_SEABIOS_360, FD_NBDBOOT_360),
}


def _resolve(value, image: bytes):
    if isinstance(value, Catalog):
        lba = int.from_bytes(image[17 * CD_SECTOR + 0x47 : 17 * CD_SECTOR + 0x4B], "little")
        return checksum(image[lba * CD_SECTOR : (lba + 1) * CD_SECTOR])
    if isinstance(value, Data):
        return checksum(image[value.lba * SECTOR : (value.lba + value.count) * SECTOR])
    if isinstance(value, Filler):
        return checksum(bytes([FILLER]) * SECTOR * value.count)
    return value


def expected(image_path: Path, bios: str, only_common: bool = False, program: str = "conformance") -> dict[str, dict]:
    """Merged expectations of `program` (a key of PROGRAMS) for `bios` ("seabios" or "nbdboot"),
    checksums computed from the image as built."""
    common, seabios, nbdboot = PROGRAMS[program]
    specific = {"seabios": seabios, "nbdboot": nbdboot}[bios]
    image = Path(image_path).read_bytes()
    merged: dict[str, dict] = {}
    for table in (common,) if only_common else (common, specific):
        for case, fields in table.items():
            merged.setdefault(case, {}).update({k: _resolve(v, image) for k, v in fields.items()})
    return merged


def mismatches(results: dict[str, dict[str, int]], expect: dict[str, dict]) -> list[str]:
    """Human-readable differences between reported results and expectations (empty when all match)."""
    problems = []
    for case, fields in expect.items():
        got = results.get(case)
        if got is None:
            problems.append(f"{case}: not reported")
            continue
        for key, want in fields.items():
            if key not in got:
                problems.append(f"{case} {key}: not reported")
            elif callable(want):
                if not want(got[key]):
                    problems.append(f"{case} {key}={got[key]:X}: not acceptable")
            elif got[key] != want:
                problems.append(f"{case} {key}={got[key]:X}, expected {want:X}")
    return problems


# ---- bootimages/conformance/readparams.asm: parameter-driven reads for property tests ----------------------------

PARAM_LBA = 7  # the parameter sector inside readparams.img
MAX_READS = 31


class ReadOp:
    """One read for readparams.asm: AH=02h with CHS (c, h, s) or AH=42h with an LBA, into segment:offset."""

    def __init__(self, count: int, segment: int, offset: int, *, lba: int | None = None,
                 chs: tuple[int, int, int] | None = None, dap_size: int = 0x10):
        if (lba is None) == (chs is None):
            raise ValueError("give exactly one of lba= (AH=42h) or chs= (AH=02h)")
        self.count, self.segment, self.offset, self.lba, self.chs, self.dap_size = (
            count, segment, offset, lba, chs, dap_size)

    def __repr__(self) -> str:
        where = f"lba={self.lba}" if self.chs is None else f"chs={self.chs}"
        return f"ReadOp({self.count}, {self.segment:#x}, {self.offset:#x}, {where})"

    @property
    def linear(self) -> int:
        return self.segment * 16 + self.offset

    def first_lba(self, heads: int = H, spt: int = S) -> int:
        if self.lba is not None:
            return self.lba
        c, h, s = self.chs
        return (c * heads + h) * spt + s - 1

    def encode(self) -> bytes:
        if self.chs is not None:
            c, h, s = self.chs
            cx = ((c & 0xFF) << 8) | ((c >> 8) << 6) | s
            return bytes([0x02, self.count]) + self.offset.to_bytes(2, "little") + \
                self.segment.to_bytes(2, "little") + cx.to_bytes(2, "little") + bytes([h, 0]) + bytes(6)
        return bytes([0x42, self.count]) + self.offset.to_bytes(2, "little") + self.segment.to_bytes(2, "little") + \
            bytes(3) + bytes([self.dap_size]) + self.lba.to_bytes(4, "little") + bytes(2)


def param_sector(reads: list[ReadOp]) -> bytes:
    if len(reads) > MAX_READS:
        raise ValueError(f"at most {MAX_READS} reads per run")
    return b"".join(r.encode() for r in reads).ljust(SECTOR, b"\0")


READ_LOW, READ_HIGH = 0x10000, 0x90000  # free conventional memory: above the stack and program, below the EBDA


@st.composite
def read_ops(draw, high_memory: bool = False):
    """A random read both BIOSes accept: 1-127 sectors inside the disk, CHS or LBA, buffer in free conventional
    memory; with high_memory, one in ten in the high memory area (FFFF:xxxx; not for SeaBIOS, see the tests)."""
    count = draw(st.integers(1, 127))
    if high_memory and draw(st.integers(0, 9)) == 0:  # FFFF:xxxx, A20 on
        segment = 0xFFFF
        offset = draw(st.integers(0x10, 0x10000 - count * SECTOR))
    else:
        linear = draw(st.integers(READ_LOW, READ_HIGH - count * SECTOR))
        top = min(0xFFFF, linear)
        offset = (draw(st.integers(0, top)) & ~0xF) | (linear & 0xF)
        if offset > top:
            offset -= 16
        segment = (linear - offset) // 16
    first = draw(st.integers(PARAM_LBA + 1, DISK_SECTORS - count))
    if draw(st.booleans()):
        return ReadOp(count, segment, offset, lba=first)
    c, rest = divmod(first, H * S)
    h, s = divmod(rest, S)
    return ReadOp(count, segment, offset, chs=(c, h, s + 1))


def with_params(image: bytes, reads: list[ReadOp]) -> bytes:
    """The readparams image with its parameter sector replaced."""
    start = PARAM_LBA * SECTOR
    return image[:start] + param_sector(reads) + image[start + SECTOR :]


def read_expectation(image: bytes, reads: list[ReadOp]) -> dict[str, dict]:
    """What a successful run of `reads` reports: CF=0, AH=0 and the checksum of the sectors read, per entry."""
    expect = {}
    for n, r in enumerate(reads):
        lba = r.first_lba()
        expect[f"P.{n:02X}"] = {"CF": 0, "AH": 0, "SUM": checksum(image[lba * SECTOR : (lba + r.count) * SECTOR])}
    return expect


# ---- bootimages/conformance/geometry.asm: AH=08h/15h/48h for disks a test lays out ------------------------------

MAX_CHS_SECTORS = 1024 * 240 * 63  # iPXE's INT13_MAX_CHS_SECTORS: above it CHS is not "valid" in 48h


def chs_address(lba: int, heads: int, spt: int) -> tuple[int, int, int]:
    """(cylinder, head, sector) of an LBA, saturated at 1023/heads-1/spt as partitioning tools write it."""
    c, rest = divmod(lba, heads * spt)
    h, s = divmod(rest, spt)
    if c > 1023:
        return 1023, heads - 1, spt
    return c, h, s + 1


def partition_entry(start: int, count: int, heads: int, spt: int, ptype: int = 0x83, active: bool = False) -> bytes:
    def packed(c, h, s):
        return bytes([h, s | ((c >> 8) << 6), c & 0xFF])

    return (bytes([0x80 if active else 0]) + packed(*chs_address(start, heads, spt)) + bytes([ptype])
            + packed(*chs_address(start + count - 1, heads, spt)) + start.to_bytes(4, "little")
            + count.to_bytes(4, "little"))


def geometry_disk(path: Path, program: bytes, sectors: int, entries: list[bytes]) -> bytes:
    """Writes a sparse disk of `sectors` sectors: the geometry program with `entries` as its partition table.
    Returns the MBR."""
    mbr = bytearray(program[:SECTOR])
    table = b"".join(entries).ljust(64, b"\0")
    mbr[0x1BE:0x1FE] = table
    with open(path, "wb") as f:
        f.write(bytes(mbr) + program[SECTOR:])
        f.truncate(sectors * SECTOR)
    return bytes(mbr)


def ipxe_geometry(mbr: bytes, sectors: int) -> tuple[int, int, int]:
    """iPXE's guess (int13_guess_geometry_hdd, reference section 2.5): per used partition, sectors per track from a
    start in cylinder 0 at a head other than 0, then heads and sectors raised to the partition's end CHS; 255/63
    by default; cylinders from the 32-bit capacity, at most 1024."""
    heads = spt = 0
    for i in range(4):
        e = mbr[0x1BE + 16 * i : 0x1CE + 16 * i]
        if e[4] == 0:
            continue
        start_head, start_sector, start_cyl = e[1], e[2] & 0x3F, e[3] | ((e[2] & 0xC0) << 2)
        start_lba = int.from_bytes(e[8:12], "little")
        if start_cyl == 0 and start_head != 0:  # iPXE assigns here (not max), then raises from the end CHS
            spt = (start_lba + 1 - start_sector) // start_head
        end_head, end_sector = e[5], e[6] & 0x3F
        heads, spt = max(heads, end_head + 1), max(spt, end_sector)
    heads, spt = heads or 255, spt or 63
    capacity32 = min(sectors, 0xFFFFFFFF)
    return min(capacity32 // (heads * spt), 1024), heads, spt


def geometry_expectation_nbdboot(mbr: bytes, sectors: int) -> dict[str, dict]:
    c, h, s = ipxe_geometry(mbr, sectors)
    capacity32 = min(sectors, 0xFFFFFFFF)
    flags = 0x01 | (0x02 if c < 1024 and sectors <= MAX_CHS_SECTORS else 0)
    return {
        "G.1": {"CF": 0, "AH": 0, "CX": (((c - 1) & 0xFF) << 8) | (((c - 1) >> 8) << 6) | s, "DX": ((h - 1) << 8) | 1},
        "G.2": {"CF": 0, "AH": 3, "CX": capacity32 >> 16, "DX": capacity32 & 0xFFFF},
        "G.3": {"CF": 0, "AH": 0, "FLAGS": flags, "CYL": c, "HEADS": h, "SPT": s,
                "SECTORS": sectors & 0xFFFFFFFF, "SECTORSHI": sectors >> 32},
    }


# ---- bootimages/conformance/drives.asm: several drives -------------------------------------------------------------

DRIVES_PARAMS = {"1.11": 0x80, "1.12": 0x81, "1.13": 0x82, "1.18": 0x00, "1.19": 0x01}  # AH=08h, DL
DRIVES_EXT_READS = {"1.14": 0x80, "1.15": 0x81}  # LBA 0 through AH=42h
DRIVES_CHS_READS = {"1.20": 0x00, "1.21": 0x01, "1.22": 0x80, "1.23": 0x81, "1.24": 0x82}  # C/H/S 0/0/1, AH=02h
FLOPPY_1440 = (80, 2, 18, 4)  # cylinders, heads, sectors, CMOS type: the only floppy size the drives tests use


def drives_expected(first: Path, second: Path, bios: str) -> dict[str, dict]:
    """What drives.asm reports with `first` as 80h and `second` as 81h, booted from 80h."""
    return drive_layout_expected({0x80: first, 0x81: second}, 0x80, bios)


def drive_layout_expected(layout: dict[int, Path], boot: int, bios: str, san: int | None = None) -> dict[str, dict]:
    """What drives.asm reports, booted from `boot`, when BIOS drive n reaches the disk image layout[n] (hard
    disks from 80h, 1.44M floppies below; numbers without a disk fail). `san` is nbdboot's SAN drive (default:
    the boot drive): after 40:75 and the floppy bits are cleared (1.25), iPXE restores only the count of its
    class; SeaBIOS restores neither."""
    images = {n: Path(p).read_bytes() for n, p in layout.items()}
    disks = max((n - 0x7F for n in layout if n >= 0x80), default=0)
    floppies = max((n + 1 for n in layout if n < 0x80), default=0)
    floppy_bits = 0x01 | ((floppies - 1) << 6) if floppies else 0

    def count(dl: int) -> int:
        return disks if dl & 0x80 else floppies

    expect: dict[str, dict] = {
        "1.10": {"DRIVE": boot, "HDCOUNT": disks, "EQUIP": lambda v: v & 0xC1 == floppy_bits},
    }
    for case, dl in DRIVES_PARAMS.items():
        if dl not in images:
            expect[case] = {"CF": 1, "AH": 1}
            if bios == "nbdboot":  # iPXE's wrapper loads DL with the count even on a chained call
                expect[case]["DX"] = lambda v, n=count(dl): v & 0xFF == n
            continue
        expect[case] = {"CF": 0, "AH": 0, "DX": lambda v, n=count(dl): v & 0xFF == n}
        if bios != "nbdboot":
            continue
        if dl < 0x80:
            c, h, s, _ = FLOPPY_1440
            assert len(images[dl]) == c * h * s * SECTOR, "drives tests use 1.44M floppies"
        else:
            c, h, s = ipxe_geometry(images[dl][:SECTOR], len(images[dl]) // SECTOR)
        expect[case]["CX"] = (((c - 1) & 0xFF) << 8) | (((c - 1) >> 8) << 6) | s
        expect[case]["DX"] = ((h - 1) << 8) | count(dl)
    for case, dl in DRIVES_EXT_READS.items():
        if dl in images:
            expect[case] = {"CF": 0, "AH": 0, "SUM": checksum(images[dl][:SECTOR])}
        else:
            expect[case] = {"CF": 1, "AH": 1, "SUM": checksum(bytes([FILLER]) * SECTOR)}
    if 0x81 in images:
        expect["1.16"] = {"CF": 0, "AH": 3}
        expect["1.17"] = {"CF": 0, "AH": 0x30, "BX": 0xAA55}
        if bios == "nbdboot":
            sectors = min(len(images[0x81]) // SECTOR, 0xFFFFFFFF)
            expect["1.16"].update(CX=sectors >> 16, DX=sectors & 0xFFFF)
    else:
        expect["1.17"] = {"CF": 1, "AH": 1}
        if bios == "nbdboot":
            expect["1.16"] = {"CF": 0, "AH": 0}  # 15h: "no such drive"
    for case, dl in DRIVES_CHS_READS.items():
        if dl in images:
            expect[case] = {"CF": 0, "AH": 0, "SUM": checksum(images[dl][:SECTOR])}
        else:
            expect[case] = {"CF": 1, "AH": 1, "SUM": checksum(bytes([FILLER]) * SECTOR)}
    # 1.25: AH=08h on 80h right after the program cleared 40:75 and the floppy bits of 40:10.
    restored_disks, restored_bits = 0, 0
    if bios == "nbdboot":
        san = boot if san is None else san
        if san & 0x80:
            restored_disks = disks
        else:
            restored_bits = floppy_bits
    expect["1.25"] = {"CF": 0 if 0x80 in images else 1, "DX": lambda v, n=restored_disks: v & 0xFF == n,
                      "HDCOUNT": restored_disks, "EQUIP": lambda v, b=restored_bits: v & 0xC1 == b}
    return expect
