"""Two hard disks under QEMU+SeaBIOS: drives.asm on 80h, the SYSLINUX ladder disk as 81h."""

from __future__ import annotations

from support import int13_expect as ie, qemuref
from support.images import image


def test_two_disks(nbdkit):
    first, second = image("drives"), image("l2-syslinux")
    boot_disk = nbdkit("-r", "file", str(first))
    other = nbdkit("-r", "file", str(second))
    result = qemuref.boot(
        boot_disk.uri, [], readonly=True, expect_debug="END drives", timeout=30,
        extra_args=("-drive", f"file={other.uri},format=raw,if=ide,index=1,media=disk,snapshot=on"),
    )
    assert result.matched, result.debug
    assert ie.mismatches(result.results, ie.drives_expected(first, second, "seabios")) == []
    # SeaBIOS's own geometry answers (QEMU's guesses), and 15h's (C-1)*H*S.
    assert result.results["1.11"]["CX"] == 0x123F and result.results["1.12"]["CX"] == 0x3F3F
    assert (result.results["1.16"]["CX"] << 16 | result.results["1.16"]["DX"]) == 0xFC00


def test_nbdboot_expectation_uses_ipxe_geometry_per_disk():
    exp = ie.drives_expected(image("drives"), image("l2-syslinux"), "nbdboot")
    assert exp["1.11"]["CX"] == 0x003F and exp["1.11"]["DX"] == 0xFE02  # no partition table: 255/63, 1 cylinder
    assert (exp["1.16"]["CX"], exp["1.16"]["DX"]) == (0x0001, 0x0000)  # 65536 sectors, exact
