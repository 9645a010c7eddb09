"""The compatibility corpus under nbdboot: every case of tests/support/corpus.py served read-only by a real nbdkit and
booted by `nbdboot run`, held to the texts QEMU+SeaBIOS shows for the same image (tests/test_reference_corpus.py).

A case nbdboot cannot pass yet is a strict xfail whose reason names the missing device or feature, with a short
timeout so that it stays cheap; when a fix lands, the xfail turns into a failure that says to drop it. A case
that passes only in some runs (its reason says why) is a non-strict xfail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.corpus import CASES
from support.images import image

MEDIA_ARGS = {"hdd": [], "cd": ["--media", "cd"], "floppy": ["--drive", "0x00"]}


def _param(name):
    case = CASES[name]
    marks = [pytest.mark.corpus_long] if case.slow else []
    if case.xfail:
        marks.append(pytest.mark.xfail(strict=not case.flaky, reason=case.xfail))
    return pytest.param(name, marks=marks, id=name)


def boot(case, uri: str, serial: Path | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "nbdboot", "run", uri, *MEDIA_ARGS[case.media], "--headless",
            "--memory", str(case.memory_mb - 1), "--timeout", str(case.nbdboot_timeout)]
    last = case.expect[-1]
    if serial is not None:
        # COM1 to a file, and the run waits for COM1's last text: Linux writes each message to the screen, then
        # to the serial console, so a run ended by the screen's text could stop before COM1 had it.
        assert not case.keys, "keys wait for screen texts"
        argv += ["--serial", f"file:{serial}", "--expect-on", "serial"]
        last = case.serial[-1]
    for text, keys in case.keys_after_text():   # as a person types: once the prompt shows
        argv += ["--expect", text, "--keys", keys]
    argv += ["--expect", last]
    return subprocess.run(argv, capture_output=True, text=True, timeout=case.nbdboot_timeout + 60)


@pytest.mark.parametrize("name", [_param(n) for n in CASES])
def test_case_under_nbdboot(name, nbdkit, tmp_path):
    case = CASES[name]
    server = nbdkit("-r", "file", str(image(case.image)))
    serial = tmp_path / "com1.log" if case.serial else None
    result = boot(case, server.uri, serial)
    screen = result.stdout.rsplit("---- screen ----", 1)[-1]
    # A guest that gives up hands back to the BIOS, which ends the run (exit 5): maybe before the session read
    # the screen for the text, which must be there all the same.
    accepted = (0, 5) if case.gives_up else (0,)
    assert result.returncode in accepted, (f"{name}: exit {result.returncode}, {case.expect[-1]!r} not seen\n"
                                    f"{result.stderr[-3000:]}\n{screen}")
    for text in case.expect:
        assert text in screen, f"{name}: {text!r} not on the final screen:\n{screen}"
    if serial is not None:
        output = serial.read_bytes().decode("latin-1")
        for text in case.serial:
            assert text in output, f"{name}: {text!r} not sent to COM1:\n{output[-3000:]}"
