"""The ladder's recipes, proven on the reference PC: each rung boots under QEMU+SeaBIOS from a real nbdkit.

These are the same images and expected texts nbdboot's ladder tests use; if a rung fails here, the recipe in
bootimages/images.mk is wrong, not our int 13h.
"""

from __future__ import annotations

import pytest

from support import qemuref
from support.images import image
from support.ladder import LADDER


@pytest.mark.parametrize("rung", list(LADDER))
def test_rung_boots_under_seabios(rung, nbdkit):
    name, media, expect = LADDER[rung]
    img = image("l6-grub" if name == "l7-grub" else name)
    server = nbdkit("-r", "file", str(img))
    result = qemuref.boot(server.uri, expect, media=media, readonly=True, timeout=60)
    assert result.matched, f"{rung}: {expect} not seen after {result.elapsed:.1f}s; screen:\n{result.text()}"


def test_grub_runs_its_config_from_the_export(nbdkit):
    # grub.cfg loads a module and writes GRUB-CFG to port E9h: GRUB read its config and modules from the export,
    # not only its core image (its command line clears the screen, so the echo is not there to see).
    server = nbdkit("-r", "file", str(image("l6-grub")))
    result = qemuref.boot(server.uri, ["grub>"], media="hdd", readonly=True, expect_debug="GRUB-CFG\n", timeout=60)
    assert result.matched, f"debug output: {result.debug!r}"


def test_a_missing_text_times_out_without_hanging(nbdkit):
    server = nbdkit("-r", "file", str(image("l2-syslinux")))
    result = qemuref.boot(server.uri, ["this text is never printed"], media="hdd", readonly=True, timeout=3)
    assert not result.matched
    assert 3 <= result.elapsed < 30  # it gave up at the timeout instead of waiting on
    assert "boot:" in result.screen
