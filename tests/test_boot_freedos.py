"""FreeDOS from the shared 720K floppy, through the real machine, to A:\\>."""

from __future__ import annotations

import shutil
import time

import pytest

from nbdboot.console.screen import screen_text
from nbdboot.disk.file import FileDevice
from nbdboot.pc import PC


def boot_until(machine, text, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        machine.run_slice()
        if text in screen_text(machine.cpu):
            return screen_text(machine.cpu)
    raise AssertionError(f"{text!r} not on screen after {timeout}s:\n{screen_text(machine.cpu)}")


@pytest.fixture
def freedos_copy(freedos_img, tmp_path):
    path = tmp_path / "freedos.img"
    shutil.copyfile(freedos_img, path)
    return path


def test_freedos_boots_to_prompt_from_file_device(freedos_copy):
    machine = PC()
    streamed = []
    machine.bios.video.on_output = lambda ch: streamed.append(chr(ch))
    with FileDevice(freedos_copy) as device:
        machine.bios.disk.add_drive(0x00, device)
        machine.power_on(0x00)
        screen = boot_until(machine, "A:\\>")
    assert "FreeDOS kernel" in screen
    assert "HIMEM" in screen and "64MB" in screen          # extended memory seen through int 15h
    assert "in HMA" in screen                                # DOS=HIGH worked: A20 + HMA
    assert machine.irq_count[0] > 0                          # the timer ran
    assert "Welcome to FreeDOS" in "".join(streamed)         # teletype text was streamed
