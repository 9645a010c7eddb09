"""AH=08h/15h/48h under QEMU+SeaBIOS for disks of several sizes and partition layouts.

SeaBIOS takes QEMU's geometry (QEMU guesses from the partition table, else 16 heads, then SeaBIOS translates
large disks), so its answers are asserted as observed; what nbdboot must answer follows iPXE's guess, modelled in
int13_expect.ipxe_geometry() and checked here against hand-computed cases.
"""

from __future__ import annotations

import pytest

from support import int13_expect as ie, qemuref
from support.images import image

# name: (sectors, partitions as (start, count, heads, spt) written with that geometry's CHS)
LAYOUTS = {
    "classic-16-63": (20160, [(63, 20160 - 63, 16, 63)]),
    "aligned-255-63": (204800, [(2048, 204800 - 2048, 255, 63)]),
    "linux-64-32": (131072, [(32, 131072 - 32, 64, 32)]),
    "ends-mid-track": (20160, [(63, 15000, 16, 63)]),
    "empty": (20160, []),
    "over-8g": (20971520, [(2048, 20971520 - 2048, 255, 63)]),
    "over-2t": (5368709120, []),
}

# What QEMU 7.2 + SeaBIOS 1.16.2 answered: G.1 CX, DX; G.2 CX, DX; G.3 FLAGS, CYL, HEADS, SPT.
SEABIOS = {
    "classic-16-63": (0x123F, 0x0F01, 0x0000, 0x4AD0, 0x0002, 20, 16, 63),
    "aligned-255-63": (0xC93F, 0x0F01, 0x0003, 0x1B60, 0x0002, 203, 16, 63),
    "linux-64-32": (0x803F, 0x0F01, 0x0001, 0xFBF0, 0x0002, 130, 16, 63),
    "ends-mid-track": (0xD006, 0x0F01, 0x0000, 0x4E60, 0x0002, 210, 16, 6),  # QEMU takes S from the end: 6
    "empty": (0x123F, 0x0F01, 0x0000, 0x4AD0, 0x0002, 20, 16, 63),
    "over-8g": (0xFEFF, 0xFE01, 0x00FA, 0xC53F, 0x0000, 0x3FFF, 16, 63),
    "over-2t": (0xFEFF, 0xFE01, 0x00FA, 0xC53F, 0x0000, 0x3FFF, 16, 63),
}

# iPXE's guess for the same disks, computed by hand from its algorithm: (C, H, S).
IPXE = {
    "classic-16-63": (20, 16, 63),
    "aligned-255-63": (17, 191, 63),  # the partition ends mid-cylinder at head 190: iPXE takes end head + 1
    "linux-64-32": (64, 64, 32),
    "ends-mid-track": (20, 16, 63),  # sectors from the start in cylinder 0 (LBA 63 at head 1)
    "empty": (1, 255, 63),
    "over-8g": (1024, 255, 63),
    "over-2t": (1024, 255, 63),
}


def build(tmp_path, name):
    sectors, parts = LAYOUTS[name]
    entries = [ie.partition_entry(start, count, heads, spt) for start, count, heads, spt in parts]
    path = tmp_path / f"{name}.img"
    mbr = ie.geometry_disk(path, image("geometry").read_bytes(), sectors, entries)
    return path, mbr, sectors


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_ipxe_model_matches_hand_computed_guesses(tmp_path, name):
    _, mbr, sectors = build(tmp_path, name)
    assert ie.ipxe_geometry(mbr, sectors) == IPXE[name]


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_seabios_geometry(nbdkit, tmp_path, name):
    path, mbr, sectors = build(tmp_path, name)
    server = nbdkit("-r", "file", str(path))
    result = qemuref.boot(server.uri, [], readonly=True, expect_debug="END geometry", timeout=30)
    assert result.matched, result.debug
    g1cx, g1dx, g2cx, g2dx, flags, cyl, heads, spt = SEABIOS[name]
    expect = {
        "G.1": {"CF": 0, "AH": 0, "CX": g1cx, "DX": g1dx},
        "G.2": {"CF": 0, "AH": 3, "CX": g2cx, "DX": g2dx},
        "G.3": {"CF": 0, "AH": 0, "FLAGS": flags, "CYL": cyl, "HEADS": heads, "SPT": spt,
                "SECTORS": sectors & 0xFFFFFFFF, "SECTORSHI": sectors >> 32},
    }
    assert ie.mismatches(result.results, expect) == []
    # The nbdboot expectation names the same fields, and differs from SeaBIOS's where iPXE's guess does.
    nbdboot = ie.geometry_expectation_nbdboot(mbr, sectors)
    assert all(set(f) <= set(result.results[c]) for c, f in nbdboot.items())


def test_nbdboot_expectation_for_a_huge_disk():
    mbr = bytes(512)
    exp = ie.geometry_expectation_nbdboot(mbr, 5368709120)
    assert exp["G.2"]["CX"] == 0xFFFF and exp["G.2"]["DX"] == 0xFFFF  # 15h clamps to 32 bits
    assert exp["G.3"]["FLAGS"] == 0x01 and exp["G.3"]["SECTORSHI"] == 1  # CHS not valid; exact 64-bit count
    assert exp["G.1"]["CX"] == 0xFFFF and exp["G.1"]["DX"] == 0xFE01  # 1024 cylinders, 255 heads, 63 sectors
