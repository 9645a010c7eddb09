"""The int 13h conformance programs on nbdboot, served by a real nbdkit, against the NBDBOOT expectations.

The same programs and server filters as tests/test_reference_conformance.py (QEMU+SeaBIOS); the machine runs in
process and the results are read from its port E9h log.
"""

from __future__ import annotations

import pytest

from support import int13_expect, qemuref
from support.conformance import conformance_server_args, run_program
from support.images import image
from support.servers import running_nbdkit


@pytest.fixture(scope="module")
def conformance_run():
    img = image("conformance")
    with running_nbdkit(*conformance_server_args(img)) as server:
        results, log = run_program(server.uri, 0x80, b"END conformance")
    return img, results, log


def test_every_case_is_reported(conformance_run):
    _, results, log = conformance_run
    assert log.startswith("BEGIN conformance 1\n")
    cases = set(int13_expect.COMMON) | set(int13_expect.NBDBOOT)
    missing = sorted(cases - set(results))
    assert not missing, [line for line in log.split("\n") if any(f"T {c} " in line for c in missing)]
    assert "0.0" not in results  # the program loaded itself


def test_nbdboot_answers_as_decided(conformance_run):
    img, results, _ = conformance_run
    problems = int13_expect.mismatches(results, int13_expect.expected(img, "nbdboot"))
    assert not problems, "\n".join(problems)


def test_long_count_read_lands_in_the_seg_off_buffer(conformance_run):
    # 6.10: count FFh, 2 sectors in the u32 at DAP+18h, flat address at DAP+10h left 0: nothing written at 0.
    img, results, _ = conformance_run
    case = results["6.10"]
    assert case["CF"] == 0 and case["COUNT"] == 0xFF
    assert case["SUM"] == qemuref.checksum(img.read_bytes()[400 * 512:402 * 512])


@pytest.mark.parametrize("program, name", [("fdconf1440", "fdconf1440"), ("fdconf360", "fdconf360")])
def test_floppy_answers_as_decided(program, name, nbdkit):
    img = image(name)
    server = nbdkit("--filter=cow", "file", str(img))
    results, _ = run_program(server.uri, 0x00, b"END fdconf")
    problems = int13_expect.mismatches(results, int13_expect.expected(img, "nbdboot", program=program))
    assert not problems, "\n".join(problems)


def test_cd_answers_as_decided(nbdkit):
    img = image("cdconf")
    server = nbdkit("-r", "file", str(img))
    results, _ = run_program(server.uri, 0x80, b"END cdconf", media="cd")
    problems = int13_expect.mismatches(results, int13_expect.expected(img, "nbdboot", program="cdconf"))
    assert not problems, "\n".join(problems)


def test_reset_reopens_the_nbd_connection(tmp_path):
    # AH=00h is iPXE's sandev_reset: the conformance program's reset (case 2.1) must reach the server as a
    # second connection, and the program must carry on reading through it.
    img = image("conformance")
    log = tmp_path / "nbdkit.log"
    with running_nbdkit("--filter=log", *conformance_server_args(img), f"logfile={log}") as server:
        results, _ = run_program(server.uri, 0x80, b"END conformance")
    assert results["2.1"]["CF"] == 0 and results["2.1"]["AH"] == 0
    assert log.read_text().count("Connect ") >= 2
