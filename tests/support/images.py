"""Boot images: those bootimages/images.mk builds, by name, once per test session, and the shared FreeDOS floppy."""

from __future__ import annotations

import fcntl
import functools
import subprocess
from pathlib import Path

import pytest

from .corpus import CASES

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "bootimages" / "build"
SHARED = ROOT.parent / "shared"
FREEDOS_IMG = SHARED / "images" / "freedos722.img"

IMAGES = {
    "l2-syslinux": "l2-syslinux.img",
    "l3-chain-freedos": "l3-chain-freedos.img",
    "l4-memdisk": "l4-memdisk.img",
    "l5-isolinux": "l5-isolinux.iso",
    "l6-grub": "l6-grub.iso",
    "conformance": "conformance.img",
    "readparams": "readparams.img",
    "cdconf": "cdconf.iso",
    "fdconf1440": "fdconf1440.img",
    "fdconf360": "fdconf360.img",
    "drives": "drives.img",
    "geometry": "geometry.bin",  # a program, not a disk: tests write the disk around it
    "bench-ext127": "bench-ext127.img",
    "bench-ext1": "bench-ext1.img",
    "cpuwork-off": "cpuwork-off.img",
    "cpuwork-on": "cpuwork-on.img",
    "cpuwork-off-16m": "cpuwork-off-16m.img",
    "cpuwork-on-16m": "cpuwork-on-16m.img",
    "cpu-ipxe": "cpu-ipxe.img",
    "rmvectors": "rmvectors.img",
    "pmkernel": "pmkernel.img",
    "v86mon": "v86mon.img",
    "rtcrate": "rtcrate.img",
    "kbdhook": "kbdhook.img",
    "ledblink": "ledblink.img",
    "syslinux-serial": "syslinux-serial.img",
    "syslinux-vesamenu": "syslinux-vesamenu.img",
    "grub-display": "grub-display.iso",
}
# The compatibility corpus (corpus.py): its images go by their file names.
IMAGES.update({case.image: case.image for case in CASES.values()})


@functools.cache
def image(name: str) -> Path:
    """Path of the built image `name` (see IMAGES); runs make for it the first time in a session.
    make decides whether it is stale, so an edited recipe or source rebuilds it."""
    if name not in IMAGES:
        raise KeyError(f"unknown boot image {name!r}; known: {', '.join(IMAGES)}")
    target = f"bootimages/build/{IMAGES[name]}"
    BUILD.mkdir(parents=True, exist_ok=True)
    # Parallel test processes share bootimages/build/: one make at a time.
    with open(BUILD / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(["make", "-s", target], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"make {target} failed:\n{proc.stdout}{proc.stderr}")
    return ROOT / target
