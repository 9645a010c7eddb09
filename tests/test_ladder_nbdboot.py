"""The boot ladder on nbdboot: each rung is served read-only by a real nbdkit and booted by `nbdboot run`.

Same images and screen texts as tests/test_reference_ladder.py (where QEMU+SeaBIOS proves the recipes), so a rung
failing here and passing there is our BIOS's fault.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from images import image

# rung: (image, texts that must all be on the final screen; the last one is what `nbdboot run` waits for)
LADDER = {
    "L2-syslinux-hdd": ("l2-syslinux", ["NBDBOOT-L2 SYSLINUX from a hard disk", "boot:"]),
    "L3-chain-freedos": ("l3-chain-freedos", ["NBDBOOT-L3 C:\\>"]),
    "L4-memdisk-floppy": ("l4-memdisk", ["Welcome to FreeDOS", "A:\\>"]),
    "L6-grub-hdd": ("l6-grub", ["GNU GRUB", "grub>"]),
}


def run_cli(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "nbdboot", "run", *argv],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("rung", list(LADDER))
def test_rung_boots_on_nbdboot(rung, nbdkit):
    name, texts = LADDER[rung]
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
