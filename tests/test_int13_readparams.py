"""Property test: random int 13h reads (CHS 02h and LBA 42h, 1-127 sectors, buffers anywhere in free conventional
memory or the high memory area) on nbdboot from a real nbdkit land exactly what the image file holds there.

readparams.asm performs the reads listed in its parameter sector and reports a checksum of each buffer; the same
program is proven under QEMU+SeaBIOS by tests/test_reference_readparams.py.

It runs with the machine's default slicing on purpose: it found that slices ended from the port hooks made Unicorn
run I/O instructions twice (see Machine._on_in), which showed as repeated debug output and corrupted checksums.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import int13_expect as ie
from support.conformance import run_program
from support.images import image


def run(nbdkit, tmp_path, reads):
    disk = ie.with_params(image("readparams").read_bytes(), reads)
    path = tmp_path / "readparams.img"
    path.write_bytes(disk)
    server = nbdkit("-r", "file", str(path))
    results, _ = run_program(server.uri, 0x80, b"END readparams")
    server.stop()
    return disk, results


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ie.read_ops(high_memory=True), min_size=1, max_size=ie.MAX_READS))
def test_random_placements_read_what_the_image_holds(nbdkit, tmp_path, reads):
    disk, results = run(nbdkit, tmp_path, reads)
    problems = ie.mismatches(results, ie.read_expectation(disk, reads))
    assert not problems, "\n".join(problems)


def test_a_read_into_the_high_memory_area(nbdkit, tmp_path):
    read = ie.ReadOp(127, 0xFFFF, 0x10, lba=2000)  # the whole HMA but its last 512 bytes, A20 on
    disk, results = run(nbdkit, tmp_path, [read])
    assert ie.mismatches(results, ie.read_expectation(disk, [read])) == []


def test_a_wrong_expectation_is_caught(nbdkit, tmp_path):
    # The comparison can fail: the same read, predicted from the next LBA, mismatches.
    disk, results = run(nbdkit, tmp_path, [ie.ReadOp(3, 0x3000, 0x10, chs=(1, 0, 1))])
    assert ie.mismatches(results, ie.read_expectation(disk, [ie.ReadOp(3, 0x3000, 0x10, lba=16 * 63 + 1)]))
    assert not ie.mismatches(results, ie.read_expectation(disk, [ie.ReadOp(3, 0x3000, 0x10, lba=16 * 63)]))
