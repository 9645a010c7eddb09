"""The CD conformance program (El Torito no-emulation boot image) under QEMU+SeaBIOS from a real nbdkit."""

from __future__ import annotations

import pytest

from support import int13_expect as ie, qemuref
from support.images import image
from support.servers import running_nbdkit


@pytest.fixture(scope="module")
def cd_run():
    iso = image("cdconf")
    with running_nbdkit("-r", "file", str(iso)) as server:
        result = qemuref.boot(server.uri, ["CD conformance: done"], media="cd", readonly=True,
                              expect_debug="END cdconf", timeout=60)
    assert result.matched, f"{result.debug}\n{result.text()}"
    return iso, result


def test_every_cd_case_is_reported(cd_run):
    _, result = cd_run
    cases = set(ie.CD_COMMON) | set(ie.CD_SEABIOS) | set(ie.CD_NBDBOOT)
    assert sorted(cases - set(result.results)) == []


def test_seabios_agrees_where_the_references_agree(cd_run):
    iso, result = cd_run
    problems = ie.mismatches(result.results, ie.expected(iso, "seabios", only_common=True, program="cdconf"))
    assert not problems, "\n".join(problems)


def test_seabios_specific_cd_answers(cd_run):
    iso, result = cd_run
    problems = ie.mismatches(result.results, ie.expected(iso, "seabios", program="cdconf"))
    assert not problems, "\n".join(problems)


def test_packet_lba_is_the_boot_image(cd_run):
    # SeaBIOS reports the boot image's LBA in the 4B01h packet; it must be where the catalog says the image is.
    iso, result = cd_run
    data = iso.read_bytes()
    catalog_lba = int.from_bytes(data[17 * 2048 + 0x47 : 17 * 2048 + 0x4B], "little")
    boot_lba = int.from_bytes(data[catalog_lba * 2048 + 32 + 8 : catalog_lba * 2048 + 32 + 12], "little")
    assert result.results["9.11"]["PLBA"] == boot_lba
    assert data[boot_lba * 2048 : boot_lba * 2048 + 4096] == image("cdconf").parent.joinpath("cdconf.bin").read_bytes()


def test_nbdboot_cd_expectations_name_real_fields(cd_run):
    _, result = cd_run
    for case, fields in ie.CD_NBDBOOT.items():
        assert set(fields) <= set(result.results[case]), case
