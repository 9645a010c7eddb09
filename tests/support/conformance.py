"""The int 13h conformance programs: the nbdkit that serves them as they expect, and a run on nbdboot in process."""

from __future__ import annotations

import time

from nbdboot.disk.nbd import NbdDevice
from nbdboot.pc import PC
from nbdboot.nbd.uri import parse_uri

from . import qemuref
from .images import ROOT

BAD_SECTORS_MAP = ROOT / "bootimages" / "conformance" / "badsectors.map"


def conformance_server_args(img) -> list[str]:
    """nbdkit arguments serving conformance.img as the program expects: writes to LBA 800-801 refused (protect
    filter, outermost so the overlay cannot absorb them), copy-on-write so the other write cases leave the built
    image alone, and LBA 700-703 failing with EIO (ddrescue filter), for the I/O error cases."""
    protect = f"protect={800 * 512}-{802 * 512 - 1}"
    return ["--filter=protect", "--filter=cow", "--filter=ddrescue", "file", str(img),
            f"ddrescue-mapfile={BAD_SECTORS_MAP}", protect]


def run_program(uri: str, drive: int, end: bytes, timeout: float = 30.0, media: str = "auto"):
    """Boot `uri` as BIOS drive `drive` until the program logs `end`; returns its parsed results and the log."""
    machine = PC()
    with NbdDevice(parse_uri(uri)) as device:
        machine.bios.disk.add_drive(drive, device, media=media)
        machine.power_on(drive)
        deadline = time.monotonic() + timeout
        while end not in machine.debugcon.output and time.monotonic() < deadline:
            machine.run_slice()
    log = machine.debugcon.output.decode(errors="replace")
    assert end.decode() in log, f"the program did not finish:\n{log[-2000:]}"
    return qemuref.parse_results(log), log
