"""`make demo`'s image boots through --image: the MBR loads stage 2 and both report what the BIOS says."""

from __future__ import annotations

from pathlib import Path

from nbdboot.cli import main

DEMO = Path(__file__).resolve().parent.parent / "bootimages" / "demo.img"


def test_demo_image_boots_and_reports(tmp_path, capsys):
    image = tmp_path / "demo.img"
    image.write_bytes(DEMO.read_bytes())
    code = main(["run", "--image", str(image), "--expect", "demo complete", "--timeout", "30",
                 "--headless", "--memory", "32"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "demo MBR: drive 80" in out
    assert "EDD 30h, features 0D" in out
    assert "int 13h 42h read 02h sectors to 0:8000" in out
    assert "geometry (int 13h 08h): cylinders 1, heads 2, sectors/track 32" in out
    assert "size (int 13h 48h): 64 sectors of 512 bytes" in out
    assert "base memory (int 12h): 639 KiB" in out
    assert f"usable RAM (int 15h E820): {639 + 32 * 1024} KiB" in out
    assert "last sector says: Hello from the last sector of the disk." in out


def test_demo_image_as_floppy_loads_with_chs(tmp_path, capsys):
    # As drive 00h there are no extensions: the MBR falls back to CHS reads.
    image = tmp_path / "demo.img"
    image.write_bytes(DEMO.read_bytes())
    code = main(["run", "--image", str(image), "--drive", "0x00", "--expect", "demo complete",
                 "--timeout", "30", "--headless"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "no EDD" in out and "int 13h 02h read 02h sectors to 0:8000" in out
