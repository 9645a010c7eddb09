"""The corpus images hold what their recipes in bootimages/images.mk promise (no emulator needed)."""

from __future__ import annotations

import struct
import subprocess

import pytest

from support.images import FREEDOS_IMG, image
from support.servers import require_tool

# size in KiB -> (cylinders, heads, sectors per track, media descriptor) of the PC floppy formats
FLOPPIES = {160: (40, 1, 8, 0xFE), 180: (40, 1, 9, 0xFC), 320: (40, 2, 8, 0xFF), 360: (40, 2, 9, 0xFD),
            640: (80, 2, 8, 0xFB), 720: (80, 2, 9, 0xF9), 1200: (80, 2, 15, 0xF9), 1440: (80, 2, 18, 0xF0),
            2880: (80, 2, 36, 0xF0)}


def mcopy_out(img, name: str) -> bytes:
    require_tool("mcopy")
    return subprocess.run(["mcopy", "-n", "-i", str(img), f"::{name}", "-"], check=True, capture_output=True).stdout


@pytest.mark.parametrize("kib", list(FLOPPIES))
def test_freedos_floppy_has_its_sizes_geometry_and_freedos_boot_code(kib):
    img = image(f"corpus-fd{kib}.img")
    data = img.read_bytes()
    cylinders, heads, sectors, media = FLOPPIES[kib]
    assert len(data) == kib * 1024 == cylinders * heads * sectors * 512
    boot = data[:512]
    total, medium, _, spt, nheads = struct.unpack_from("<HBHHH", boot, 0x13)
    assert (total, medium, spt, nheads) == (kib * 2, media, sectors, heads)
    assert boot[510:] == b"\x55\xaa"
    freedos = FREEDOS_IMG.read_bytes()[:512]
    assert boot[0x3E:510] == freedos[0x3E:510]  # the boot code past the BPB is FreeDOS's own
    assert mcopy_out(img, "KERNEL.SYS") == mcopy_out(FREEDOS_IMG, "KERNEL.SYS")
    assert f"NBDBOOT-FD{kib} FreeDOS from a {kib}K floppy".encode() in mcopy_out(img, "AUTOEXEC.BAT")


def test_installer_cd_keeps_the_netboot_menu_on_a_text_console(tmp_path):
    iso = image("corpus-di-isolinux.iso")
    require_tool("xorriso")

    def extract(path: str) -> str:
        out = tmp_path / path.rsplit("/", 1)[-1]
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", path, str(out)],
                       check=True, capture_output=True)
        return out.read_text()

    assert "debian-installer/i386/boot-screens/menu.c32" in extract("/isolinux.cfg")
    txt = extract("/debian-installer/i386/boot-screens/txt.cfg")
    assert "vga=normal no-scroll nomodeset" in txt and "quiet" not in txt
