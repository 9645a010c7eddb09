"""The boot ladder on nbdboot: each rung is served read-only by a real nbdkit and booted by `nbdboot run`.

The rungs of tests/support/ladder.py, as in tests/test_reference_ladder.py (where QEMU+SeaBIOS proves the recipes),
so a rung failing here and passing there is our BIOS's fault.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from nbdboot.console.screen import screen_text
from nbdboot.disk.nbd import NbdDevice
from nbdboot.pc import PC
from nbdboot.nbd.uri import parse_uri
from support.images import ROOT, image
from support.ladder import LADDER

# L7, the L6 image as a CD, has its own tests below
RUNGS = [rung for rung in LADDER if rung != "L7-grub-cd"]


def run_cli(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "nbdboot", "run", *argv],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("rung", RUNGS)
def test_rung_boots_on_nbdboot(rung, nbdkit):
    name, _, texts = LADDER[rung]
    server = nbdkit("-r", "file", str(image(name)))
    result = run_cli(server.uri, "--expect", texts[-1], "--timeout", "60", "--headless")
    assert result.returncode == 0, f"{rung}: exit {result.returncode}\n{result.stderr}\n{result.stdout[-3000:]}"
    screen = result.stdout.rsplit("---- screen ----", 1)[-1]
    for text in texts:
        assert text in screen, f"{rung}: {text!r} not on the screen:\n{screen}"


def test_a_rung_that_never_shows_the_text_exits_1(nbdkit):
    server = nbdkit("-r", "file", str(image("l2-syslinux")))
    result = run_cli(server.uri, "--expect", "this text is never printed", "--timeout", "3", "--headless")
    assert result.returncode == 1
    assert "boot:" in result.stdout  # it booted, and the final screen shows how far


def test_l7_grub_hybrid_boots_as_a_cd(nbdkit):
    # The L6 image again, presented as a CD (El Torito no-emulation), booted in process so that the drive's CD
    # geometry can be checked too (the CLI's --media cd is the next test).
    server = nbdkit("-r", "file", str(image("l6-grub")))
    machine = PC()
    with NbdDevice(parse_uri(server.uri)) as device:
        drive = machine.bios.disk.add_drive(0x80, device, media="cd")
        assert drive.is_cdrom and drive.capacity == device.size // 2048
        machine.power_on(0x80)
        deadline = time.monotonic() + 60
        while "grub>" not in screen_text(machine.cpu) and time.monotonic() < deadline:
            machine.run_slice()
    screen = screen_text(machine.cpu)
    assert "GNU GRUB" in screen and "grub>" in screen, screen
    assert b"GRUB-CFG\n" in machine.debugcon.output  # grub.cfg was read from the CD, not only the core image


def test_l7_through_the_cli_with_media_cd(nbdkit, tmp_path):
    # The hybrid image asked for as a CD on the command line. It would boot as a hard disk too, so the
    # option's effect is shown on the demo disk: presented as a CD it has no El Torito record to boot.
    server = nbdkit("-r", "file", str(image("l6-grub")))
    result = subprocess.run([sys.executable, "-m", "nbdboot", "run", server.uri, "--media", "cd", "--headless",
                             "--expect", "grub>", "--timeout", "60"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    demo = str(ROOT / "bootimages" / "demo.img")
    as_cd = subprocess.run([sys.executable, "-m", "nbdboot", "run", "--image", demo, "--media", "cd", "--headless",
                            "--expect", "demo complete", "--timeout", "30"], capture_output=True, text=True, timeout=60)
    assert as_cd.returncode == 5, as_cd.stderr
    bad = subprocess.run([sys.executable, "-m", "nbdboot", "run", server.uri, "--media", "cd", "--drive", "0x00"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--media cd needs" in bad.stderr
