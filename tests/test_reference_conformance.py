"""The int 13h conformance program under QEMU+SeaBIOS from a real nbdkit.

Where the reference says iPXE and SeaBIOS agree, SeaBIOS's answers prove the program itself right (it reads what it
says it reads, decodes what it says it decodes); SeaBIOS's own answers are asserted too, so the differences table
in docs/int13.md rests on observed behaviour.
"""

from __future__ import annotations

import pytest

from support import int13_expect, qemuref
from support.conformance import conformance_server_args
from support.images import image
from support.servers import running_nbdkit


@pytest.fixture(scope="module")
def seabios_run():
    img = image("conformance")
    with running_nbdkit(*conformance_server_args(img)) as server:
        result = qemuref.boot(server.uri, ["conformance: done"], expect_debug="END conformance", timeout=60)
    assert result.matched, f"the program did not finish: {result.debug[-2000:]}\n{result.text()}"
    return img, result


def test_every_case_is_reported(seabios_run):
    _, result = seabios_run
    assert result.debug.startswith("BEGIN conformance 1\n")
    cases = set(int13_expect.COMMON) | set(int13_expect.SEABIOS) | set(int13_expect.NBDBOOT)
    missing = sorted(cases - set(result.results))
    assert not missing, f"cases not reported: {missing}"
    assert "0.0" not in result.results  # the program loaded itself


def test_seabios_agrees_where_the_references_agree(seabios_run):
    img, result = seabios_run
    problems = int13_expect.mismatches(result.results, int13_expect.expected(img, "seabios", only_common=True))
    assert not problems, "\n".join(problems)


def test_seabios_specific_answers(seabios_run):
    img, result = seabios_run
    problems = int13_expect.mismatches(result.results, int13_expect.expected(img, "seabios"))
    assert not problems, "\n".join(problems)


def test_seabios_takes_ffff_ffff_as_a_segment_not_a_flat_pointer(seabios_run):
    _, result = seabios_run
    case = result.results["6.11"]
    assert case["FLAT"] == case["BEFORE"]


def test_nbdboot_expectations_name_real_fields(seabios_run):
    # Every field the emulator tests will check is one the program reports.
    _, result = seabios_run
    for case, fields in int13_expect.NBDBOOT.items():
        assert set(fields) <= set(result.results[case]), case


def test_data_checksums_are_not_trivial(seabios_run):
    # A checksum that matched filler or zeros would prove nothing about the data read.
    img, _ = seabios_run
    exp = int13_expect.expected(img, "seabios")
    filler = int13_expect._resolve(int13_expect.Filler(1), b"")
    sums = [exp[c]["SUM"] for c in ("3.1", "3.2", "3.10", "6.1", "6.2")]
    assert len(set(sums)) == len(sums) and filler not in sums and 0 not in sums


def test_parse_results_reads_lines_and_ignores_noise():
    text = "BEGIN x\nT 5.1 CF=0 AH=30 BX=AA55\r\nnoise T 9.9 AH=00\nT 6.10 COUNT=00FF SUM=deadBEEF\nT 5.1 CF=1\nT bad AH=zz\n"
    assert qemuref.parse_results(text) == {"5.1": {"CF": 1}, "6.10": {"COUNT": 0xFF, "SUM": 0xDEADBEEF}}


def test_checksum_matches_the_guest_definition():
    # a += d; b += a over little-endian dwords: two dwords 1, 2 -> a = 1, 3; b = 1, 4.
    assert qemuref.checksum((1).to_bytes(4, "little") + (2).to_bytes(4, "little")) == 4
    assert qemuref.checksum(b"\xff\xff\xff\xff" * 2) == (0xFFFFFFFF + 0xFFFFFFFE) & 0xFFFFFFFF
