"""Several drives as iPXE makes them: the PC's own disks (`nbdboot run --disk`) with the NBD export hooked on top.

bootimages/conformance/drives.asm reports, per BIOS drive number, AH=08h and a checksum of LBA 0, plus the BDA
counts before and after a loader clears them. Each layout below says which image every number must reach; the
export is served by a real nbdkit, the PC's own disks are opened exactly as `nbdboot run --disk` opens them
(nbdboot.commands.run), and int13_expect.drive_layout_expected() turns the layout into the expected report.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from nbdboot.cli import main
from nbdboot.commands import run
from nbdboot.disk.nbd import NbdDevice
from nbdboot.pc import PC
from nbdboot.nbd.uri import parse_uri
from support import int13_expect as ie, qemuref
from support.images import image
from support.servers import require_tool

FLOPPY_BYTES = 1440 * 1024


@pytest.fixture(scope="module")
def disks(tmp_path_factory) -> dict[str, Path]:
    """Images with distinct sector 0s: the drives program (also cut to a 1.44M floppy, whose first 2880 sectors
    are the same program and data), and copies of two other programs' disks to serve as the PC's own."""
    tmp = tmp_path_factory.mktemp("drives")
    found = {"drives": image("drives")}
    floppy = tmp / "drives1440.img"
    floppy.write_bytes(found["drives"].read_bytes()[:FLOPPY_BYTES])
    found["drives1440"] = floppy
    for name in ("conformance", "readparams", "fdconf1440"):
        found[name] = tmp / f"{name}.img"
        shutil.copyfile(image(name), found[name])
    return found


def run_drives(san_uri: str, san_drive: int, local: list[str], timeout: float = 30.0) -> dict[str, dict]:
    """Boot drives.asm from the export at `san_drive`, with `local` as --disk arguments; its parsed report."""
    machine = PC()
    opened: list = []
    try:
        run.attach_local_disks(machine, run.number_disks([run.parse_disk(d) for d in local]), opened)
        san = NbdDevice(parse_uri(san_uri))
        opened.append(san)
        machine.bios.disk.add_drive(san_drive, san)
        machine.power_on(san_drive)
        deadline = time.monotonic() + timeout
        while b"END drives" not in machine.debugcon.output and time.monotonic() < deadline:
            machine.run_slice()
    finally:
        for device in opened:
            device.close()
    log = machine.debugcon.output.decode(errors="replace")
    assert "END drives" in log, f"the program did not finish:\n{log[-2000:]}"
    return qemuref.parse_results(log)


# name: (export image, its --drive, --disk arguments (an image name, "@DRIVE" kept; "nbd:" or "hostport:" + name
# is served by a second nbdkit and given as its URI or HOST:PORT), what every number reaches)
LAYOUTS = {
    # iPXE's pairwise swap: the PC's 80h moves to the export's natural number 81h.
    "swap": ("drives", 0x80, ["conformance"], {0x80: "drives", 0x81: "conformance"}),
    # Asked for at its natural number, the export displaces nothing.
    "natural": ("drives", 0x81, ["conformance"], {0x80: "conformance", 0x81: "drives"}),
    # Only the displaced disk moves (to 82h); the PC's 81h keeps its number. Its 81h is itself an NBD export.
    "three": ("drives", 0x80, ["conformance", "nbd:readparams"],
              {0x80: "drives", 0x81: "readparams", 0x82: "conformance"}),
    # A floppy export next to the PC's hard disk: each class has its own numbers and count.
    "floppy-and-hdd": ("drives1440", 0x00, ["hostport:conformance"], {0x00: "drives1440", 0x80: "conformance"}),
    # A floppy export displacing the PC's floppy A: to B:.
    "floppy-swap": ("drives1440", 0x00, ["fdconf1440@0x00", "conformance"],
                    {0x00: "drives1440", 0x01: "fdconf1440", 0x80: "conformance"}),
    "export-alone": ("drives", 0x80, [], {0x80: "drives"}),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_number_reaches_its_disk(name, disks, nbdkit):
    export, drive, local, reaches = LAYOUTS[name]
    san = nbdkit("-r", "file", str(disks[export]))
    arguments = []
    for spec in local:
        if spec.startswith("nbd:"):
            arguments.append(nbdkit("-r", "file", str(disks[spec[4:]])).uri)
        elif spec.startswith("hostport:"):
            arguments.append(nbdkit("-r", "file", str(disks[spec[9:]])).hostport)
        else:
            source, at, number = spec.partition("@")
            arguments.append(str(disks[source]) + at + number)
    results = run_drives(san.uri, drive, arguments)
    expect = ie.drive_layout_expected({n: disks[img] for n, img in reaches.items()}, drive, "nbdboot")
    problems = ie.mismatches(results, expect)
    assert not problems, "\n".join(problems)


def test_bda_counts_cover_every_drive(disks, nbdkit):
    # The swap layout read literally: two hard disks in 40:75, no floppy bits; after a loader clears both,
    # the next int 13h call puts 40:75 back (iPXE's int13_check_num_drives) and AH=08h says 2.
    results = run_drives(nbdkit("-r", "file", str(disks["drives"])).uri, 0x80, [str(disks["conformance"])])
    assert (results["1.10"]["HDCOUNT"], results["1.10"]["EQUIP"] & 0xC1) == (2, 0)
    assert results["1.25"]["HDCOUNT"] == 2 and results["1.25"]["DX"] & 0xFF == 2


def test_seabios_agrees_on_what_each_number_reaches(disks, nbdkit):
    # QEMU+SeaBIOS with the drives disk as 80h and a second IDE disk as 81h; nbdboot's swap layout gives the
    # guest the same picture. Geometry, AH=08h's DL on absent drives and the re-sync after 40:75 is cleared
    # (1.25) are where the two BIOSes differ; docs/int13.md has the rows.
    require_tool("qemu-system-i386")
    first, second = nbdkit("-r", "file", str(disks["drives"])), nbdkit("-r", "file", str(disks["conformance"]))
    reference = qemuref.boot(first.uri, [], readonly=True, expect_debug="END drives", timeout=30, extra_args=(
        "-drive", f"file={second.uri},format=raw,if=ide,index=1,media=disk,snapshot=on"))
    assert reference.matched, reference.debug
    ours = run_drives(first.uri, 0x80, [str(disks["conformance"])])
    layout = {0x80: disks["drives"], 0x81: disks["conformance"]}
    assert ie.mismatches(reference.results, ie.drive_layout_expected(layout, 0x80, "seabios")) == []
    agreed = {"1.10": ("DRIVE", "HDCOUNT"), "1.11": ("CF", "AH"), "1.12": ("CF", "AH"), "1.13": ("CF", "AH"),
              "1.16": ("CF", "AH"), "1.17": ("CF", "AH", "BX"), "1.18": ("CF", "AH"), "1.19": ("CF", "AH")}
    agreed.update({case: ("CF", "AH", "SUM") for case in ("1.14", "1.15", "1.20", "1.21", "1.22", "1.23", "1.24")})
    for case, keys in agreed.items():
        assert {k: ours[case][k] for k in keys} == {k: reference.results[case][k] for k in keys}, case
    assert ours["1.10"]["EQUIP"] & 0xC1 == reference.results["1.10"]["EQUIP"] & 0xC1 == 0
    assert ours["1.11"]["DX"] & 0xFF == reference.results["1.11"]["DX"] & 0xFF == 2
    assert ours["1.25"]["HDCOUNT"] == 2 and reference.results["1.25"]["HDCOUNT"] == 0


def fat_hard_disk(path: Path, files: dict[str, bytes]) -> Path:
    """A 16 MiB hard disk image: one FAT16 partition from sector 2048 holding `files`, as DOS makes C:."""
    for tool in ("sfdisk", "mkfs.fat", "mcopy"):
        require_tool(tool)
    with open(path, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["sfdisk", "-q", str(path)], input=b"start=2048, type=6\n", check=True)
    subprocess.run(["mkfs.fat", "-F", "16", "-h", "2048", "--offset", "2048", str(path)], check=True,
                   capture_output=True)
    for name, data in files.items():
        src = path.parent / name
        src.write_bytes(data)
        subprocess.run(["mcopy", "-i", f"{path}@@{2048 * 512}", str(src), f"::{name}"], check=True)
    return path


def test_freedos_floppy_sees_the_local_hard_disk_as_c(freedos_img, nbdkit, tmp_path, capsys):
    # FreeDOS boots from the export as A: and finds --disk as C: through the BIOS's 80h; a write to C: lands in
    # the local file, as on a real local disk.
    text = b"NBDBOOT-DRIVES C: is the local disk\r\n"
    disk = fat_hard_disk(tmp_path / "c.img", {"FILE.TXT": text})
    server = nbdkit("--filter=cow", "file", str(freedos_img))
    code = main(["run", server.uri, "--drive", "0x00", "--disk", str(disk), "--headless", "--timeout", "60",
                 "--expect", "A:\\>", "--keys", r"type c:\\file.txt\recho written> c:\\out.txt\r",
                 "--expect", "NBDBOOT-DRIVES C: is the local disk", "--expect", "A:\\>", "--expect", "A:\\>"])
    out = capsys.readouterr().out
    assert code == 0, out
    written = subprocess.run(["mtype", "-i", f"{disk}@@{2048 * 512}", "::OUT.TXT"], capture_output=True)
    assert written.stdout.strip() == b"written", out


@pytest.mark.parametrize("argv, code, message", [
    (["--disk", "/nonexistent/disk.img"], 6, "no such disk image file: /nonexistent/disk.img"),
    (["--disk", "IMG@0x81", "--disk", "IMG@0x81"], 2, "two --disk at BIOS drive 0x81"),
    (["--disk", "IMG@0x7F"], 2, "no BIOS disk can be 0x7F"),
    (["--disk", "IMG@0x04"], 2, "no BIOS disk can be 0x04"),
    (["--disk", "IMG@c:"], 2, "not a drive number after '@'"),
    (["--disk", "@0x80"], 2, "no file or URI before '@'"),
    (["--disk", "TMP"], 6, "is a directory"),
])
def test_bad_disks_are_one_line_errors(argv, code, message, freedos_img, tmp_path, capsys):
    image_copy = tmp_path / "freedos.img"
    shutil.copyfile(freedos_img, image_copy)
    argv = [a.replace("IMG", str(image_copy)).replace("TMP", str(tmp_path)) for a in argv]
    try:
        returned = main(["run", "--image", str(image_copy), "--drive", "0x00", "--headless", "--timeout", "5", *argv])
    except SystemExit as e:  # argparse's own errors (syntax) exit from parse_args
        returned = e.code
    assert returned == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


@pytest.mark.parametrize("text, spec", [
    ("disk.img", run.DiskSpec("disk.img", None)),
    ("disk.img@0x81", run.DiskSpec("disk.img", 0x81)),
    ("a@b.img@0", run.DiskSpec("a@b.img", 0x00)),
    ("nbd://127.0.0.1:10809/export@0x82", run.DiskSpec("nbd://127.0.0.1:10809/export", 0x82)),
    ("nbd://user@host/export", run.DiskSpec("nbd://user@host/export", None)),  # '@' of the URI itself
])
def test_disk_syntax(text, spec):
    assert run.parse_disk(text) == spec


def test_disks_are_numbered_in_order_around_explicit_numbers():
    specs = [run.parse_disk(t) for t in ("a.img", "b.img@0x80", "c.img", "f.img@0x01")]
    assert run.number_disks(specs) == [(0x01, "f.img"), (0x80, "b.img"), (0x81, "a.img"), (0x82, "c.img")]
