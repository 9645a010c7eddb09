"""The Python API (nbdboot.boot) on the shared FreeDOS floppy, and the README's FreeDOS command."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

import nbdboot
from nbdboot.errors import NbdbootError, UsageError
from nbdboot.nbd.uri import parse_uri

PROMPT = "A:\\>"


@pytest.fixture
def freedos_copy(freedos_img, tmp_path):
    path = tmp_path / "freedos.img"
    shutil.copyfile(freedos_img, path)
    return path


def test_boot_types_and_waits_for_text_and_regex(freedos_copy):
    with nbdboot.boot(image=str(freedos_copy)) as pc:
        assert pc.drive == 0x00                       # a floppy-sized FAT image is a floppy unless told
        assert pc.wait_for(PROMPT, timeout=60) == PROMPT
        assert pc.exit_code is None and pc.outcome == "running"
        pc.type("ver\\n")
        match = pc.wait_for(re.compile(r"FreeCom version (\S+)"), timeout=30)
        assert match.group(1)[0].isdigit(), match.group(0)
        pc.wait_for(PROMPT, timeout=30)               # the prompt after ver, not the one already on screen
        assert pc.screen.rstrip().endswith(PROMPT)
        assert pc.screen.count(PROMPT) == 2
        assert "FreeCom version" in pc.transcript
    assert pc.outcome == "closed" and pc.exit_code == 0


def test_wait_for_after_a_match_needs_new_text(boot, freedos_copy):
    pc = boot(image=freedos_copy)                     # the plugin's fixture: closed after the test
    pc.wait_for(PROMPT, timeout=60)
    with pytest.raises(nbdboot.WaitTimeout) as caught:
        pc.wait_for(PROMPT, timeout=1.5)              # nothing typed: no new prompt
    assert str(caught.value) == "timeout after 1.5s waiting for text 'A:\\>'"   # one backslash
    assert caught.value.exit_code == 1 and PROMPT in caught.value.screen


def test_stop_from_another_thread_ends_a_wait(freedos_copy):
    with nbdboot.boot(image=str(freedos_copy)) as pc:
        seen = []

        def watch():
            time.sleep(0.5)
            seen.append(pc.screen)                    # readable while the main thread drives
            pc.stop()

        t = threading.Thread(target=watch)
        t.start()
        started = time.monotonic()
        with pytest.raises(nbdboot.BootStopped):
            pc.wait_for("never printed", timeout=60)
        t.join()
        assert time.monotonic() - started < 5
        assert pc.outcome == "stopped" and pc.exit_code == 130
        assert len(seen) == 1 and isinstance(seen[0], str)


def test_close_stops_the_embedded_server(freedos_copy):
    pc = nbdboot.boot(image=str(freedos_copy), drive=0x00)
    uri = parse_uri(pc.uri)
    pc.wait_for(PROMPT, timeout=60)
    pc.close()
    pc.close()                                        # idempotent
    with pytest.raises(OSError):
        socket.create_connection((uri.host, uri.port), timeout=2).close()
    with pytest.raises(UsageError):
        pc.wait_for(PROMPT, timeout=1)


@pytest.mark.parametrize("options, message", [
    (dict(), "exactly one of"),
    (dict(image="x.img", memory=0), "--memory"),
    (dict(image="x.img", drive=0x80, media="floppy"), "--media floppy"),
    (dict(image="/nonexistent.img"), "no such image"),
])
def test_bad_options_are_usage_errors(options, message):
    with pytest.raises(NbdbootError, match=re.escape(message)):
        nbdboot.boot(**options)
    with pytest.raises(TypeError, match="no_such_option"):
        nbdboot.boot(image="x.img", no_such_option=1)


def test_readme_freedos_example_boots_as_a_floppy(freedos_copy):
    # README: nbdboot run --image disk.img --keys 'ver\n' --expect 'A:\>' --expect 'A:\>'
    result = subprocess.run([sys.executable, "-m", "nbdboot", "run", "--image", str(freedos_copy),
                             "--keys", "ver\\n", "--expect", PROMPT, "--expect", PROMPT, "--timeout", "60s",
                             "--headless"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "FreeCom version" in result.stdout


def test_timeout_message_does_not_double_backslashes(freedos_copy):
    result = subprocess.run([sys.executable, "-m", "nbdboot", "run", "--image", str(freedos_copy),
                             "--expect", "C:\\>", "--timeout", "3s", "--headless"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "nbdboot: timeout after 3s waiting for 'C:\\>'" in result.stderr
    assert "\\\\" not in result.stderr


def test_floppy_image_boots_as_hard_disk_when_told(boot, freedos_copy):
    assert boot(image=freedos_copy, drive=0x80).drive == 0x80


def test_wait_for_timeout_bounds_a_guest_stuck_on_a_silent_server():
    from support.badnbd import BadServer
    from nbdboot.interrupt import DeadlineReached
    with BadServer("stall-after-boot") as srv:
        with nbdboot.boot(srv.uri, media="hdd") as pc:
            started = time.monotonic()
            with pytest.raises(DeadlineReached, match="reached while waiting for the NBD server"):
                pc.wait_for("never printed", timeout=2)
            assert time.monotonic() - started < 3.5
            assert pc.outcome == "nbd-error" and pc.exit_code == 3
            assert "*" in pc.screen                    # the boot sector ran, then its read never came back
