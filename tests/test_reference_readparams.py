"""readparams.asm under QEMU+SeaBIOS: random read placements through int 13h agree with the image file.

Proves the parameter-driven program (and its encoder in int13_expect) before nbdboot's property tests use it.
Only placements both BIOSes accept: counts up to 127 sectors within the disk, buffers in free conventional memory.
Not the high memory area (FFFF:xxxx): under SeaBIOS a read to FFFF:0010 reports success but leaves that buffer
untouched, and a second such read hung the machine (likely cause, unverified: its 16-bit ATA PIO path truncates
the segment of the flat address, so the data lands at 0000:0000 over the IVT). nbdboot's tests add those
placements with read_ops(high_memory=True).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import int13_expect as ie, qemuref
from support.images import image


def run(nbdkit, tmp_path, reads):
    base = image("readparams").read_bytes()
    disk = ie.with_params(base, reads)
    path = tmp_path / "readparams.img"
    path.write_bytes(disk)
    server = nbdkit("-r", "file", str(path))
    result = qemuref.boot(server.uri, [], readonly=True, expect_debug="END readparams", timeout=30)
    assert result.matched, result.debug
    return disk, result


def test_default_parameters(nbdkit, tmp_path):
    server = nbdkit("-r", "file", str(image("readparams")))
    result = qemuref.boot(server.uri, [], readonly=True, expect_debug="END readparams", timeout=30)
    disk = image("readparams").read_bytes()
    expect = ie.read_expectation(disk, [ie.ReadOp(1, 0x2000, 0, lba=100), ie.ReadOp(1, 0x2000, 0, chs=(0, 1, 1))])
    assert ie.mismatches(result.results, expect) == []


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ie.read_ops(), min_size=1, max_size=8))
def test_random_placements_read_what_the_image_holds(nbdkit, tmp_path, reads):
    disk, result = run(nbdkit, tmp_path, reads)
    problems = ie.mismatches(result.results, ie.read_expectation(disk, reads))
    assert not problems, "\n".join(problems)


def test_a_wrong_expectation_is_caught(nbdkit, tmp_path):
    # The comparison must be able to fail: the same read, predicted from another LBA, mismatches.
    disk, result = run(nbdkit, tmp_path, [ie.ReadOp(3, 0x3000, 0x10, lba=1000)])
    wrong = ie.read_expectation(disk, [ie.ReadOp(3, 0x3000, 0x10, lba=1001)])
    assert ie.mismatches(result.results, wrong) == ["P.00 SUM=%X, expected %X" % (
        result.results["P.00"]["SUM"], wrong["P.00"]["SUM"])]
