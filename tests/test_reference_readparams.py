"""readparams.asm under QEMU+SeaBIOS: random read placements through int 13h agree with the image file.

Proves the parameter-driven program (and its encoder in int13_expect) before nbdboot's property tests use it.
Only placements both BIOSes accept: counts up to 127 sectors within the disk, buffers in free conventional memory.
Not the high memory area (FFFF:xxxx): SeaBIOS's ATA PIO path truncates the buffer's segment to 16 bits
(FLATPTR_TO_SEG), so a read to FFFF:0010 lands at 0000:0000 over the IVT; nbdboot's tests add those placements.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import int13_expect as ie
import qemuref
from images import image

LOW, HIGH = 0x10000, 0x90000  # free conventional memory: above our stack and program, below the EBDA


@st.composite
def read_ops(draw, high_memory: bool = False):
    count = draw(st.integers(1, 127))
    if high_memory and draw(st.integers(0, 9)) == 0:  # FFFF:xxxx, A20 on
        segment = 0xFFFF
        offset = draw(st.integers(0x10, 0x10000 - count * ie.SECTOR))
    else:
        linear = draw(st.integers(LOW, HIGH - count * ie.SECTOR))
        top = min(0xFFFF, linear)
        offset = (draw(st.integers(0, top)) & ~0xF) | (linear & 0xF)
        if offset > top:
            offset -= 16
        segment = (linear - offset) // 16
    first = draw(st.integers(ie.PARAM_LBA + 1, ie.DISK_SECTORS - count))
    if draw(st.booleans()):
        return ie.ReadOp(count, segment, offset, lba=first)
    c, rest = divmod(first, ie.H * ie.S)
    h, s = divmod(rest, ie.S)
    return ie.ReadOp(count, segment, offset, chs=(c, h, s + 1))


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
@given(st.lists(read_ops(), min_size=1, max_size=8))
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
