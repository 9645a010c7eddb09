"""The built boot images hold what their recipes in bootimages/images.mk promise (no emulator needed)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from support.images import BUILD, FREEDOS_IMG, ROOT, image
from support.servers import require_tool

SECTOR = 512
PART_OFFSET = 1048576


def mcopy_out(img: Path, name: str, offset: int = 0) -> bytes:
    require_tool("mcopy")
    spec = f"{img}@@{offset}" if offset else str(img)
    return subprocess.run(["mcopy", "-n", "-i", spec, f"::{name}", "-"], check=True, capture_output=True).stdout


def partition(mbr: bytes, n: int = 0) -> tuple[int, int, int, int]:
    entry = mbr[446 + 16 * n : 446 + 16 * (n + 1)]
    return entry[0], entry[4], *struct.unpack_from("<II", entry, 8)


@pytest.mark.parametrize("name", ["l2-syslinux", "l3-chain-freedos", "l4-memdisk"])
def test_syslinux_hard_disks(name):
    img = image(name)
    data = img.read_bytes()
    assert len(data) == 32 * 2**20
    mbr = data[:SECTOR]
    assert mbr[:440] == Path("/usr/lib/syslinux/mbr/mbr.bin").read_bytes()[:440]
    assert mbr[510:] == b"\x55\xaa"
    assert partition(mbr) == (0x80, 0x06, 2048, 65536 - 2048)
    boot = data[PART_OFFSET : PART_OFFSET + SECTOR]
    assert boot[0x36:0x3E] == b"FAT16   " and boot[510:] == b"\x55\xaa"
    assert struct.unpack_from("<I", boot, 0x1C)[0] == 2048  # hidden sectors = the partition's start
    assert b"SYSLINUX" in boot
    assert mcopy_out(img, "ldlinux.sys", PART_OFFSET)
    cfg = mcopy_out(img, "syslinux.cfg", PART_OFFSET)
    assert cfg == (ROOT / "bootimages/ladder" / name / "syslinux.cfg").read_bytes()


def test_chain_freedos_carries_the_floppys_kernel():
    img = image("l3-chain-freedos")
    for name in ("KERNEL.SYS", "COMMAND.COM"):
        assert mcopy_out(img, name, PART_OFFSET) == mcopy_out(FREEDOS_IMG, name)
    for module in ("chain.c32", "libcom32.c32", "libutil.c32"):
        assert mcopy_out(img, module, PART_OFFSET) == Path("/usr/lib/syslinux/modules/bios", module).read_bytes()
    assert b"PROMPT NBDBOOT-L3" in mcopy_out(img, "AUTOEXEC.BAT", PART_OFFSET)


def test_memdisk_carries_the_floppy_unchanged():
    img = image("l4-memdisk")
    assert mcopy_out(img, "fdos.img", PART_OFFSET) == FREEDOS_IMG.read_bytes()
    assert mcopy_out(img, "memdisk", PART_OFFSET) == Path("/usr/lib/syslinux/memdisk").read_bytes()


def eltorito(data: bytes) -> tuple[int, bytes]:
    """(catalog LBA, initial/default entry) of an El Torito CD image."""
    brv = data[17 * 2048 : 18 * 2048]
    assert brv[0] == 0 and brv[1:6] == b"CD001" and brv[7:30] == b"EL TORITO SPECIFICATION"
    catalog_lba = struct.unpack_from("<I", brv, 0x47)[0]
    catalog = data[catalog_lba * 2048 : catalog_lba * 2048 + 64]
    assert catalog[0] == 1 and catalog[30:32] == b"\x55\xaa"
    return catalog_lba, catalog[32:64]


def test_isolinux_cd_is_no_emulation_with_a_boot_info_table():
    data = image("l5-isolinux").read_bytes()
    assert data[16 * 2048 + 1 : 16 * 2048 + 6] == b"CD001"
    _, entry = eltorito(data)
    indicator, media, load_segment, _, _, count, lba = struct.unpack_from("<BBHBBHI", entry)
    assert (indicator, media, load_segment, count) == (0x88, 0, 0, 4)
    boot = data[lba * 2048 : lba * 2048 + 64]
    assert struct.unpack_from("<I", boot, 12)[0] == lba  # the boot-info table: bi_file = its own LBA
    assert boot[:4] == Path("/usr/lib/ISOLINUX/isolinux.bin").read_bytes()[:4]


def test_grub_image_is_a_hybrid_disk_and_cd():
    data = image("l6-grub").read_bytes()
    assert data[510:512] == b"\x55\xaa"  # boots as a hard disk (L6)
    assert data[16 * 2048 + 1 : 16 * 2048 + 6] == b"CD001"
    _, entry = eltorito(data)  # and as a CD (L7)
    assert entry[0] == 0x88 and entry[1] == 0


def test_built_images_are_ignored_by_git():
    image("l2-syslinux")
    tracked = subprocess.run(["git", "ls-files", "bootimages/build"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout == ""
    ignored = subprocess.run(["git", "check-ignore", "-q", str(BUILD / "l2-syslinux.img")], cwd=ROOT)
    assert ignored.returncode == 0
