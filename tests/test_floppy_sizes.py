"""FreeDOS boot floppies of every size it supports (built from ../shared/images/freedos722.img's kernel,
shell and boot sector with mformat), and a floppy of no standard size, whose geometry comes from its BPB."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nbdboot.bios.int13 import FLOPPY_GEOMETRIES, floppy_geometry
from nbdboot.disk.file import FileDevice
from support.images import FREEDOS_IMG

SIZES_KB = [160, 180, 320, 360, 640, 720, 1200, 1440, 2880]


def freedos_floppy(tmp_path, kb: int, pad: int = 0):
    work = tmp_path / f"fd{kb}"
    work.mkdir()
    boot = work / "boot.bin"
    boot.write_bytes(FREEDOS_IMG.read_bytes()[:512])
    subprocess.run(["mcopy", "-i", str(FREEDOS_IMG), "::KERNEL.SYS", "::COMMAND.COM", str(work)], check=True)
    (work / "AUTOEXEC.BAT").write_bytes(b"ECHO NBDBOOT-FLOPPY\r\n")
    disk = work / "floppy.img"
    subprocess.run(["mformat", "-i", str(disk), "-C", "-f", str(kb), "-B", str(boot), "::"], check=True)
    subprocess.run(["mcopy", "-i", str(disk), str(work / "KERNEL.SYS"), str(work / "COMMAND.COM"),
                    str(work / "AUTOEXEC.BAT"), "::"], check=True)
    if pad:
        with open(disk, "ab") as f:
            f.write(bytes(pad))
    return disk


def boot(disk):
    return subprocess.run([sys.executable, "-m", "nbdboot", "run", "--image", str(disk), "--drive", "0x00",
                           "--headless", "--expect", "NBDBOOT-FLOPPY", "--timeout", "30"],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kb", SIZES_KB)
def test_freedos_floppy_boots(tmp_path, kb):
    result = boot(freedos_floppy(tmp_path, kb))
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]


def test_floppy_types_are_cmos_drive_types():
    # 1 360K, 2 1.2M, 3 720K, 4 1.44M, 5 2.88M: nothing else is a CMOS floppy type.
    assert {geometry[3] for geometry in FLOPPY_GEOMETRIES.values()} <= {1, 2, 3, 4, 5}


def test_odd_sized_floppy_geometry_from_bpb(tmp_path):
    disk = freedos_floppy(tmp_path, 720, pad=4096)  # 720K medium in a file of no standard size
    device = FileDevice(disk)
    try:
        assert floppy_geometry(device) == (80, 2, 9, 3)
    finally:
        device.close()
    result = boot(disk)
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
