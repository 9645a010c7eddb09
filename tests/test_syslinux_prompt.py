"""SYSLINUX with `PROMPT 1`, as real installs configure it, from a real nbdkit: it polls int 16h
AH=11h with interrupts off, so the BIOS must let IRQ0 and IRQ1 in for its TIMEOUT to run out and
for a typed Enter to arrive instead of sitting at `boot:` for ever."""

from __future__ import annotations

import shutil
import subprocess
import sys

from support.images import image

PARTITION = 1048576  # bootimages/images.mk BI_PART_BYTES


def prompt_image(tmp_path, timeout_tenths: int):
    disk = tmp_path / "prompt.img"
    shutil.copy(image("l2-syslinux"), disk)
    cfg = tmp_path / "syslinux.cfg"
    cfg.write_text(f"PROMPT 1\nTIMEOUT {timeout_tenths}\nSAY NBDBOOT-PROMPT\nDEFAULT hello\n"
                   "LABEL hello\n  KERNEL nosuchkernel\n")
    subprocess.run(["mcopy", "-o", "-i", f"{disk}@@{PARTITION}", str(cfg), "::syslinux.cfg"], check=True)
    return disk


def run(uri, *args):
    return subprocess.run([sys.executable, "-m", "nbdboot", "run", uri, "--headless", "--timeout", "30", *args],
                          capture_output=True, text=True, timeout=60)


def test_prompt_timeout_boots_the_default_label(nbdkit, tmp_path):
    server = nbdkit("-r", "file", str(prompt_image(tmp_path, 10)))
    result = run(server.uri, "--expect", "boot:", "--expect", "Loading nosuchkernel")
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]


def test_enter_at_the_prompt_boots_the_default_label(nbdkit, tmp_path):
    server = nbdkit("-r", "file", str(prompt_image(tmp_path, 0)))  # TIMEOUT 0: waits for ever
    result = run(server.uri, "--keys", r"\n", "--expect", "boot:", "--expect", "Loading nosuchkernel")
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
