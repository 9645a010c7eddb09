"""The compatibility corpus on the reference PC: every case of tests/support/corpus.py under QEMU+SeaBIOS from a real
nbdkit, which proves the images and the expected texts that tests/test_corpus_nbdboot.py holds nbdboot to."""

from __future__ import annotations

import pytest

from support import qemuref
from support.corpus import CASES
from support.images import image


def _param(name):
    case = CASES[name]
    marks = [pytest.mark.corpus_long] if case.slow else []
    if case.qemu_xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=case.qemu_xfail))
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_param(n) for n in CASES])
def test_case_under_seabios(name, nbdkit, tmp_path):
    case = CASES[name]
    server = nbdkit("-r", "file", str(image(case.image)))
    serial = tmp_path / "com1.log"
    result = qemuref.boot(server.uri, case.expect, media=case.media, readonly=True, timeout=case.qemu_timeout,
                          memory_mb=case.memory_mb, keys=case.qemu_keys(),
                          serial=f"file:{serial}" if case.serial else "none")
    assert result.matched, (f"{name}: {case.expect} not all on the screen after {result.elapsed:.1f}s:\n"
                            f"{result.text()}")
    if case.serial:
        output = serial.read_bytes().decode("latin-1")
        for text in case.serial:
            assert text in output, f"{name}: {text!r} not sent to COM1:\n{output[-3000:]}"
