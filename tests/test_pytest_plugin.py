"""The pytest plugin, run by pytester in a subprocess as a user's project would run it."""

from __future__ import annotations

import pytest

TESTS = '''
import shutil
import pytest

FREEDOS = {freedos!r}
PROMPT = "A:\\\\>"


@pytest.fixture
def floppy(tmp_path):
    path = tmp_path / "freedos.img"
    shutil.copyfile(FREEDOS, path)
    return path


def test_prompt_over_the_embedded_server(nbdboot_server, nbdboot_run, floppy):
    served = nbdboot_server(floppy)
    pc = nbdboot_run(served.uri)
    pc.wait_for(PROMPT, timeout=60)
    pc.type("ver\\\\n")
    pc.wait_for("FreeCom version", timeout=30)


def test_prompt_over_nbdkit(nbdboot_server, boot, floppy):
    served = nbdboot_server(floppy, server="nbdkit", read_only=True)
    boot(served.uri).wait_for(PROMPT, timeout=60)


def test_wrong_prompt_fails(boot, floppy):
    pc = boot(image=floppy)
    pc.wait_for(PROMPT, timeout=60)
    assert "C:" in pc.screen, "expected a hard disk prompt"


@pytest.mark.nbdboot_timeout(4)
def test_marker_bounds_the_waits(boot, floppy):
    boot(image=floppy).wait_for("never printed", timeout=600)
'''


def _run(pytester, freedos_img, *args):
    pytester.makepyfile(test_boots=TESTS.format(freedos=str(freedos_img)))
    # -p no:... then -p: load this checkout's plugin whether or not the package's entry point is installed
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "nbdboot.pytest_plugin", "-rA", *args,
                                         timeout=300)


def _check(result) -> None:
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    # the failing boot's final screen is in its report: a section header, then the FreeDOS prompt
    result.stdout.fnmatch_lines(["*_ test_wrong_prompt_fails _*", "*nbdboot screen 1 (nbd://127.0.0.1:*, running)*"])
    section = out.split("nbdboot screen 1", 1)[1]
    assert "A:\\>" in section.split("short test summary", 1)[0]
    result.stdout.fnmatch_lines(["*test_marker_bounds_the_waits*", "*WaitTimeout: timeout after *s waiting for text 'never printed'*"])
    assert "PASSED test_boots.py::test_prompt_over_the_embedded_server" in out
    assert "PASSED test_boots.py::test_prompt_over_nbdkit" in out


def test_plugin_passing_and_failing_boots(pytester, freedos_img):
    result = _run(pytester, freedos_img)
    _check(result)
    assert result.duration < 120


def test_plugin_under_xdist(pytester, freedos_img):
    pytest.importorskip("xdist")
    result = _run(pytester, freedos_img, "-n", "2")
    _check(result)
    result.stdout.fnmatch_lines(["*2 workers*"])
