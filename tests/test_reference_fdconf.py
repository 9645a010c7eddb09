"""The floppy conformance program under QEMU+SeaBIOS from a real nbdkit, on a 1.44M and a 360K floppy."""

from __future__ import annotations

import pytest

from support import int13_expect as ie, qemuref
from support.images import image
from support.servers import running_nbdkit


@pytest.fixture(scope="module", params=["fdconf1440", "fdconf360"])
def fd_run(request):
    img = image(request.param)
    with running_nbdkit("-r", "file", str(img)) as server:
        result = qemuref.boot(server.uri, ["floppy conformance: done"], media="floppy", readonly=True,
                              expect_debug="END fdconf", timeout=60)
    assert result.matched, f"{result.debug}\n{result.text()}"
    return request.param, img, result


def test_every_floppy_case_is_reported(fd_run):
    program, _, result = fd_run
    cases = set().union(*ie.PROGRAMS[program])
    assert sorted(cases - set(result.results)) == []


def test_seabios_agrees_where_the_references_agree(fd_run):
    program, img, result = fd_run
    problems = ie.mismatches(result.results, ie.expected(img, "seabios", only_common=True, program=program))
    assert not problems, "\n".join(problems)


def test_seabios_specific_floppy_answers(fd_run):
    program, img, result = fd_run
    problems = ie.mismatches(result.results, ie.expected(img, "seabios", program=program))
    assert not problems, "\n".join(problems)


def test_nbdboot_floppy_expectations_name_real_fields(fd_run):
    program, _, result = fd_run
    for case, fields in ie.PROGRAMS[program][2].items():
        assert set(fields) <= set(result.results[case]), case
