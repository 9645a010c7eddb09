"""The committed ROM and demo image match their NASM sources; the ROM layout is what the machine expects."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nbdboot.machine import rom

ROOT = Path(__file__).resolve().parent.parent


def nasm() -> str:
    path = shutil.which("nasm")
    if not path:
        pytest.skip("nasm is not installed")
    return path


def test_committed_bios_matches_source(tmp_path):
    out = tmp_path / "bios.bin"
    subprocess.run([nasm(), "-f", "bin", "-i", str(ROOT / "firmware") + "/", "-o", str(out),
                    str(ROOT / "firmware" / "bios.asm")], check=True)
    assert out.read_bytes() == (ROOT / "firmware" / "bios.bin").read_bytes(), \
        "firmware/bios.bin is stale: run `make firmware`"


def test_rom_py_names_the_offsets_bios_asm_places_its_entry_points_at(tmp_path):
    # bios.asm marks each entry point rom.py names with `label:  ; rom.NAME = 0xOFFSET`; the listing gives the
    # offset the label really landed at (the next line that emits bytes).
    listing = tmp_path / "bios.lst"
    subprocess.run([nasm(), "-f", "bin", "-i", str(ROOT / "firmware") + "/", "-o", str(tmp_path / "bios.bin"),
                    "-l", str(listing), str(ROOT / "firmware" / "bios.asm")], check=True)
    placed, pending = {}, None
    for line in listing.read_text().splitlines():
        marked = re.match(r"\s*\d+\s+\w+:\s*; rom\.(\w+)(?: = (0x[0-9A-F]+))?", line)
        if marked:
            pending = marked.groups()
            continue
        emitted = re.match(r"\s*\d+ ([0-9A-F]{8}) ", line)
        if pending and emitted:
            name, stated = pending
            placed[name] = (int(emitted.group(1), 16), int(stated, 16) if stated else None)
            pending = None
    assert len(placed) >= 10, placed
    for name, (offset, stated) in placed.items():
        assert getattr(rom, name) == offset, f"rom.{name} is {getattr(rom, name):#x}, bios.asm places it at {offset:#x}"
        assert stated in (None, offset), f"bios.asm's comment says rom.{name} = {stated:#x}, it is at {offset:#x}"


def test_committed_demo_image_matches_source(tmp_path):
    stage2 = tmp_path / "demo-stage2.bin"
    image = tmp_path / "demo.img"
    subprocess.run([nasm(), "-f", "bin", "-o", str(stage2), str(ROOT / "bootimages" / "demo-stage2.asm")], check=True)
    subprocess.run([nasm(), "-f", "bin", "-i", f"{tmp_path}/", "-o", str(image),
                    str(ROOT / "bootimages" / "demo-mbr.asm")], check=True)
    assert image.read_bytes() == (ROOT / "bootimages" / "demo.img").read_bytes(), \
        "bootimages/demo.img is stale: run `make bootimages/demo.img`"


def test_rom_layout():
    image = rom.load_image()
    assert len(image) == 0x10000
    for vector in (0x00, 0x10, 0x13, 0x16, 0x19, 0xFF):   # int n; iret; nop
        assert image[rom.stub(vector):rom.stub(vector) + 4] == bytes((0xCD, vector, 0xCF, 0x90))
    assert image[rom.IRQ0:rom.IRQ0 + 4] == b"\xcd\x08\xcd\x1c"     # trap, then int 1Ch through the IVT
    assert image[rom.IRQ1] == 0xEB and rom.IRQ1 + 2 + image[rom.IRQ1 + 1] == rom.IRQ1_BODY   # jmp short
    # push ax; in al,64h; test al,20h; jnz eoi; in al,60h; mov ah,4Fh; stc; int 15h; jnc eoi; int 09h (the trap)
    assert image[rom.IRQ1_BODY:rom.IRQ1_TRAP + 2] == bytes.fromhex("50e464a820750be460b44ff9cd157302cd09")
    assert image[rom.IRQ12_TRAP:rom.IRQ12_TRAP + 2] == b"\xcd\x74"
    assert image[rom.POST_ENTRY:rom.POST_ENTRY + 2] == b"\xcd\xfe"          # trap: POST ran, else a reset
    assert image[rom.RESET_VECTOR] == 0xEA                          # jmp far F000:E05B
    assert image[rom.RESET_VECTOR + 1:rom.RESET_VECTOR + 5] == b"\x5b\xe0\x00\xf0"
    assert image[0xFFF5:0xFFFD] == b"11/24/26" and image[0xFFFE] == 0xFC
    assert image[rom.DISKETTE_PARAMS + 3] == 2 and image[rom.DISKETTE_PARAMS + 4] == 18
    assert image[rom.CONFIG_TABLE:rom.CONFIG_TABLE + 3] == b"\x08\x00\xfc"
