"""The conformance, readparams and bench disks are laid out as their programs and tests assume."""

from __future__ import annotations

import struct

import pytest

from support import int13_expect as ie
from support.images import image

SECTOR = 512


@pytest.mark.parametrize("name", ["conformance", "readparams"])
def test_test_disk_geometry_and_data(name):
    data = image(name).read_bytes()
    assert len(data) == ie.DISK_SECTORS * SECTOR
    mbr = data[:SECTOR]
    assert mbr[510:] == b"\x55\xaa"
    entry = mbr[446:462]
    end_head, end_sector, end_cyl = entry[5], entry[6] & 0x3F, entry[7] | ((entry[6] & 0xC0) << 2)
    assert (end_cyl + 1, end_head + 1, end_sector) == (ie.C, ie.H, ie.S)
    assert struct.unpack_from("<II", entry, 8) == (63, ie.DISK_SECTORS - 63)
    for lba in (100, 1008, ie.DISK_SECTORS - 1):
        words = struct.unpack_from("<128I", data, lba * SECTOR)
        assert words[0] == lba
        assert words[5] == (lba * 0x9E3779B1 + 5 * 0x85EBCA77) & 0xFFFFFFFF


def test_param_sector_encoding():
    chs = ie.ReadOp(3, 0x2000, 0x10, chs=(300, 5, 17)).encode()
    assert chs[:2] == bytes([0x02, 3]) and struct.unpack_from("<HH", chs, 2) == (0x10, 0x2000)
    assert struct.unpack_from("<H", chs, 6)[0] == (300 & 0xFF) << 8 | (300 >> 8) << 6 | 17 and chs[8] == 5
    ext = ie.ReadOp(0x7F, 0xFFFF, 0x10, lba=0x12345678).encode()
    assert ext[:2] == bytes([0x42, 0x7F]) and ext[9] == 0x10 and struct.unpack_from("<I", ext, 10)[0] == 0x12345678
    assert len(ie.param_sector([ie.ReadOp(1, 0, 0, lba=1)] * 31)) == SECTOR
    with pytest.raises(ValueError):
        ie.param_sector([ie.ReadOp(1, 0, 0, lba=1)] * 32)
    with pytest.raises(ValueError):
        ie.ReadOp(1, 0, 0)


def test_readparams_default_sector_matches_the_encoder():
    data = image("readparams").read_bytes()
    default = [ie.ReadOp(1, 0x2000, 0, lba=100), ie.ReadOp(1, 0x2000, 0, chs=(0, 1, 1))]
    assert data[ie.PARAM_LBA * SECTOR : (ie.PARAM_LBA + 1) * SECTOR] == ie.param_sector(default)


@pytest.mark.parametrize("name", ["bench-ext127", "bench-ext1"])
def test_bench_disks_hold_64_mib_after_lba_2048(name):
    path = image(name)
    assert path.stat().st_size == (2048 + 131072) * SECTOR
    assert path.read_bytes()[510:512] == b"\x55\xaa"


@pytest.mark.parametrize("name, sectors", [("fdconf1440", 2880), ("fdconf360", 720)])
def test_floppy_images(name, sectors):
    data = image(name).read_bytes()
    assert len(data) == sectors * SECTOR and data[510:512] == b"\x55\xaa"
    assert struct.unpack_from("<I", data, 8 * SECTOR)[0] == 8  # data sectors start after the 8-sector program


def test_cd_image_boots_the_program_without_emulation():
    data = image("cdconf").read_bytes()
    catalog_lba = struct.unpack_from("<I", data, 17 * 2048 + 0x47)[0]
    entry = data[catalog_lba * 2048 + 32 : catalog_lba * 2048 + 64]
    indicator, media, load_segment, _, _, count, lba = struct.unpack_from("<BBHBBHI", entry)
    assert (indicator, media, load_segment, count) == (0x88, 0, 0, 8)
    assert data[lba * 2048 : lba * 2048 + 4096] == (image("cdconf").parent / "cdconf.bin").read_bytes()
