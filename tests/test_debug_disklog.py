"""--log int13 names what the sectors are: each file the log names is checked byte for byte against the file as
mtools or xorriso extract it from the same image, on a FAT12 floppy (FreeDOS), a FAT16 partition (SYSLINUX
chaining FreeDOS, and a partition built here) and an ISO9660 CD (ISOLINUX)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nbdboot.debug.fsmap import DiskMap
from support.images import image
from support.servers import require_tool

LINE = re.compile(r"LBA (\d+)\+(\d+)\s.*?(?:ok|status \w+)\s+[\d.]+ ms  (.*)$")
PIECE = re.compile(r"^(/\S(?:.*?\S)?) \[(\d+)\.\.(\d+)\)$")


def run_logged(tmp_path, *argv: str) -> list[str]:
    log = tmp_path / "int13.log"
    result = subprocess.run([sys.executable, "-m", "nbdboot", "run", *argv, "--log", f"int13,{log}",
                             "--headless"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return log.read_text().splitlines()


def file_reads(lines: list[str]) -> list[tuple[int, int, str, int, int]]:
    """(lba, count, path, first, end) of each logged transfer that is all one file."""
    found = []
    for line in lines:
        m = LINE.search(line)
        if not m:
            continue
        piece = PIECE.match(m.group(3))
        if piece and not piece.group(1).endswith("(directory)"):
            found.append((int(m.group(1)), int(m.group(2)), piece.group(1), int(piece.group(2)),
                          int(piece.group(3))))
    return found


def check_reads(disk: Path, reads, sector: int, contents) -> set[str]:
    """Every read the log names as part of a file holds that part of the file (a read of the slack past its end,
    in its last cluster, has nothing to compare)."""
    data = disk.read_bytes()
    checked = set()
    for lba, count, path, first, end in reads:
        assert end - first == count, (lba, count, path, first, end)
        content = contents(path)
        want = content[first * sector:end * sector]
        got = data[lba * sector:(lba + count) * sector][:len(want)]
        assert got == want, f"LBA {lba}+{count} is not {path} [{first}..{end})"
        if want:
            checked.add(path.lower())
    return checked


def mtools_reader(img: Path, tmp_path: Path, offset: int = 0):
    cache: dict[str, bytes] = {}
    target = f"{img}@@{offset}" if offset else str(img)

    def contents(path: str) -> bytes:
        if path not in cache:
            out = tmp_path / "extracted"
            subprocess.run(["mcopy", "-n", "-o", "-i", target, f"::{path}", str(out)], check=True,
                           capture_output=True)
            cache[path] = out.read_bytes()
        return cache[path]
    return contents


def test_fat12_floppy_log_names_the_freedos_files(freedos_img, tmp_path):
    require_tool("mcopy")
    disk = tmp_path / "freedos.img"
    disk.write_bytes(freedos_img.read_bytes())
    lines = run_logged(tmp_path, "--image", str(disk), "--drive", "0x00", "--expect", "A:\\>", "--timeout", "60")
    text = "\n".join(lines)
    assert re.search(r"00 02h read\s+CHS \d+/\d+/\d+ = LBA \d+\+\d+\s+buf [0-9A-F]{4}:[0-9A-F]{4}\s+ok", text)
    assert "root directory" in text and "FAT 1" in text
    checked = check_reads(disk, file_reads(lines), 512, mtools_reader(disk, tmp_path))
    assert {"/kernel.sys", "/command.com", "/autoexec.bat"} <= checked


def test_fat16_partition_log_names_the_kernel_loaded_by_syslinux(tmp_path):
    require_tool("mcopy")
    disk = image("l3-chain-freedos")
    lines = run_logged(tmp_path, "--image", str(disk), "--expect", "NBDBOOT-L3 C:\\>", "--timeout", "60")
    text = "\n".join(lines)
    assert "partition 1 boot sector" in text or "partition 1 reserved sectors" in text
    checked = check_reads(disk, file_reads(lines), 512, mtools_reader(disk, tmp_path, 2048 * 512))
    assert {"/kernel.sys", "/command.com", "/chain.c32", "/ldlinux.c32"} <= checked


def test_iso9660_cd_log_names_isolinux_files(tmp_path):
    require_tool("xorriso")
    iso = image("l5-isolinux")
    lines = run_logged(tmp_path, "--image", str(iso), "--expect", "boot:", "--timeout", "60")
    tree = tmp_path / "tree"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(tree)],
                   check=True, capture_output=True)
    extracted = {str(p.relative_to(tree)).lower(): p for p in tree.rglob("*") if p.is_file()}
    reads = file_reads(lines)
    checked = check_reads(iso, reads, 2048, lambda path: extracted[path.strip("/").lower()].read_bytes())
    assert {"/isolinux/ldlinux.c32", "/isolinux/isolinux.cfg"} <= checked


def build_fat16_disk(tmp_path: Path) -> tuple[Path, Path]:
    """A 40 MiB disk, one FAT16 partition at sector 2048 with nested directories, a long name and a file
    written into the hole another left (fragmented when mtools fills the hole first)."""
    for tool in ("sfdisk", "mkfs.fat", "mcopy"):
        require_tool(tool)
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(40 << 20)
    subprocess.run(["sfdisk", "-q", str(disk)], input="start=2048, type=6, bootable\n", text=True, check=True)
    subprocess.run(["mkfs.fat", "-F", "16", "-s", "4", "--offset", "2048", str(disk)], check=True,
                   capture_output=True)
    src = tmp_path / "src"
    src.mkdir()
    files = {
        "ALPHA.BIN": bytes(range(256)) * 40,
        "BETA.BIN": b"beta" * 2500,
        "GAMMA.BIN": b"gamma" * 2000,
        "A Long File Name.txt": b"long name\n" * 500,
    }
    for name, data in files.items():
        (src / name).write_bytes(data)
    target = f"{disk}@@{2048 * 512}"
    for name in files:
        subprocess.run(["mcopy", "-i", target, str(src / name), f"::{name}"], check=True, capture_output=True)
    subprocess.run(["mdel", "-i", target, "::BETA.BIN"], check=True, capture_output=True)
    (src / "DELTA.BIN").write_bytes(bytes(i * 7 & 0xFF for i in range(60000)))
    subprocess.run(["mcopy", "-i", target, str(src / "DELTA.BIN"), "::DELTA.BIN"], check=True, capture_output=True)
    subprocess.run(["mmd", "-i", target, "::DIR1", "::DIR1/SUB"], check=True, capture_output=True)
    (src / "deep.dat").write_bytes(b"deep" * 3000)
    subprocess.run(["mcopy", "-i", target, str(src / "deep.dat"), "::DIR1/SUB/DEEP.DAT"], check=True,
                   capture_output=True)
    return disk, src


def test_fat16_partition_map_places_every_file(tmp_path):
    disk, _ = build_fat16_disk(tmp_path)
    data = disk.read_bytes()
    disk_map = DiskMap(lambda offset, length: data[offset:offset + length], len(data))
    assert disk_map.describe(0, 512, 512) == "MBR"
    assert disk_map.describe(2048 * 512, 2049 * 512, 512) == "partition 1 boot sector"
    assert disk_map.describe(2049 * 512, 2051 * 512, 512).startswith("partition 1 reserved sectors")
    contents = mtools_reader(disk, tmp_path, 2048 * 512)
    labels = {e.label for level in disk_map.levels for e in level}
    assert {"partition 1", "partition 1 FAT 1", "partition 1 FAT 2", "partition 1 root directory"} <= labels
    files = {"/ALPHA.BIN", "/GAMMA.BIN", "/A Long File Name.txt", "/DELTA.BIN", "/DIR1/SUB/DEEP.DAT"}
    assert files <= labels and "/BETA.BIN" not in labels
    assert "/DIR1/ (directory)" in labels and "/DIR1/SUB/ (directory)" in labels
    for path in files:
        content = contents(path)
        extents = [e for level in disk_map.levels for e in level if e.label == path]
        covered = 0
        for e in extents:
            part = content[e.base:e.base + e.end - e.start]
            assert data[e.start:e.start + len(part)] == part, path
            covered += len(part)
        assert covered == len(content), path
    # A read spanning two files is named piece by piece, positions in 512-byte sectors.
    alpha = [e for e in disk_map.levels[2] if e.label == "/ALPHA.BIN"][0]
    text = disk_map.describe(alpha.start, alpha.start + 512 * 3, 512)
    assert text.startswith("/ALPHA.BIN [0..3)")


def test_iso9660_map_names_directories_catalog_and_boot_image(tmp_path):
    iso = image("l5-isolinux")
    data = iso.read_bytes()
    disk_map = DiskMap(lambda offset, length: data[offset:offset + length], len(data))
    assert disk_map.describe(16 * 2048, 17 * 2048, 2048) == "ISO9660 volume descriptors [0..1)"
    catalog = int.from_bytes(data[17 * 2048 + 0x47:17 * 2048 + 0x4B], "little")
    assert "boot.cat" in disk_map.describe(catalog * 2048, (catalog + 1) * 2048, 2048).lower()
    boot_rba = int.from_bytes(data[catalog * 2048 + 40:catalog * 2048 + 44], "little")
    assert "isolinux.bin" in disk_map.describe(boot_rba * 2048, (boot_rba + 1) * 2048, 2048).lower()
    labels = {e.label.lower() for level in disk_map.levels for e in level}
    assert "/isolinux/ (directory)" in labels and "el torito boot catalog" in labels


@pytest.mark.parametrize("size", [0, 511, 4096])
def test_map_of_a_disk_without_a_file_system(size):
    data = bytes(size)
    disk_map = DiskMap(lambda offset, length: data[offset:offset + length], size)
    assert disk_map.describe(0, min(size, 512) or 1, 512) in ("?", "")


def test_fat_image_booted_by_el_torito_is_mapped_inside(freedos_img, tmp_path):
    """An El Torito entry whose image is a FAT file system (a floppy image, GRUB's efi.img): its files are named
    inside the image, the image itself as the ISO file it is."""
    require_tool("xorriso")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "fd.img").write_bytes(freedos_img.read_bytes())
    (tree / "readme.txt").write_text("an ISO file beside the image\n")
    iso = tmp_path / "fd.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-o", str(iso), "-b", "fd.img", "-no-emul-boot",
                    "-boot-load-size", "4", str(tree)], check=True, capture_output=True)
    data = iso.read_bytes()
    disk_map = DiskMap(lambda offset, length: data[offset:offset + length], len(data))
    image_start = data.index(freedos_img.read_bytes()[:4096])
    contents = mtools_reader(freedos_img, tmp_path)
    kernel = [e for e in disk_map.levels[3] if e.label == "El Torito image:/KERNEL.SYS"]
    assert kernel and kernel[0].start > image_start
    for e in kernel:
        part = contents("/KERNEL.SYS")[e.base:e.base + e.end - e.start]
        assert data[e.start:e.start + len(part)] == part
    assert disk_map.describe(image_start, image_start + 512, 2048) == "/fd.img [0..1)"
    start = kernel[0].start
    assert disk_map.describe(start, start + 2048, 2048).startswith("El Torito image:/KERNEL.SYS [0..1)")
    labels = {e.label for level in disk_map.levels for e in level}
    assert "/readme.txt" in labels and "El Torito boot catalog" in labels
