"""Fault injection on loopback: failing reads, slow reads, a server killed and restarted during a boot,
nbdboot killed -9 during deploy and restore, and malformed bytes in the handshake (replies are fuzzed in
test_nbd_protocol.py and test_nbd_faults.py).

Bounded: FreeDOS (the shared 720K floppy) boots in about a second, and every fault loop is a few rounds.
The figures these produce are in docs/reliability.md; FAULT_ROUNDS=N makes the loops longer for them.
"""

from __future__ import annotations

import os
import random
import re
import select
import socket
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbdboot.nbd import protocol as P
from nbdboot.nbd.client import NbdClient
from nbdboot.nbd.errors import NbdError
from support.disks import make_source
from support.servers import free_port, start_nbdkit

PROMPT = "A:\\>"
ROUNDS = int(os.environ.get("FAULT_ROUNDS", "0"))


def boot(uri: str, screen, *extra, timeout: float = 30):
    return subprocess.run([sys.executable, "-m", "nbdboot", "run", uri, "--drive", "0x00", "--expect", PROMPT,
                           "--timeout", str(timeout), "--headless", "--screen-out", str(screen), *extra],
                          capture_output=True, text=True, timeout=timeout + 30)


@pytest.fixture(scope="module")
def reference_screen(freedos_img_module, tmp_path_factory):
    """FreeDOS's screen at the prompt, booted from a healthy nbdkit."""
    tmp = tmp_path_factory.mktemp("ref")
    srv = start_nbdkit(["--filter=cow", "file", str(freedos_img_module)], stderr=subprocess.DEVNULL)
    try:
        result = boot(srv.uri, tmp / "screen.txt")
    finally:
        srv.stop()
    assert result.returncode == 0, result.stderr
    return (tmp / "screen.txt").read_text()


@pytest.fixture(scope="module")
def freedos_img_module():
    from support.images import FREEDOS_IMG
    if not FREEDOS_IMG.exists():
        pytest.fail(f"{FREEDOS_IMG} is missing")
    return FREEDOS_IMG


_FAILED = re.compile(r"nbdboot: int13: drive 0x00 read of (\d+) sectors at LBA (\d+) failed: "
                     r"server failed READ (\d+)\+(\d+): EIO")


def test_boots_under_one_percent_read_errors(freedos_img_module, reference_screen, tmp_path):
    """nbdkit's error filter fails 1% of reads with EIO. A server error is not retried (docs/int13.md): the
    guest gets 04h for exactly the sectors of the failed request, and FreeDOS retries on its own."""
    boots = max(ROUNDS, 6)
    completed = errors = 0
    for n in range(boots):
        srv = start_nbdkit(["--filter=error", "--filter=cow", "file", str(freedos_img_module),
                            "error-pread=EIO", "error-pread-rate=1%"], stderr=subprocess.DEVNULL)
        try:
            result = boot(srv.uri, tmp_path / f"screen{n}.txt")
        finally:
            srv.stop()
        assert "Traceback" not in result.stderr
        failures = [line for line in result.stderr.splitlines() if "int13" in line]
        for line in failures:
            m = _FAILED.fullmatch(line)
            assert m, line
            sectors, lba, offset, length = map(int, m.groups())
            # the 04h the guest heard covers exactly the request the server failed
            assert (offset, length) == (lba * 512, sectors * 512), line
        errors += len(failures)
        if result.returncode == 0:
            completed += 1
            assert (tmp_path / f"screen{n}.txt").read_text() == reference_screen
        else:   # FreeDOS gave up after its own retries: the run says so, it does not hang
            assert result.returncode in (1, 4, 5) and failures, result.stderr
    print(f"\nboots completed under 1% read errors: {completed}/{boots}, int 13h errors seen: {errors}")
    assert completed >= boots - 1


def test_boots_through_a_slow_server(freedos_img_module, reference_screen, tmp_path):
    srv = start_nbdkit(["--filter=delay", "--filter=cow", "file", str(freedos_img_module), "rdelay=3ms"],
                       stderr=subprocess.DEVNULL)
    try:
        result = boot(srv.uri, tmp_path / "screen.txt")
    finally:
        srv.stop()
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "screen.txt").read_text() == reference_screen


def test_server_killed_and_restarted_during_a_boot(freedos_img_module, reference_screen, tmp_path):
    """The server dies at a random moment of the boot and comes back 0.3 s later on the same port: the
    client reopens and re-sends, the guest never notices, and the boot ends at the same screen."""
    rounds = max(ROUNDS, 5)
    rnd = random.Random(13)
    port = free_port()
    # 300 ms a read: the drive reads ahead 32 KiB at a time, so the boot is a few slow reads, not many fast ones
    args = ["--filter=delay", "--filter=cow", "file", str(freedos_img_module), "rdelay=300ms"]
    survived = 0
    for n in range(rounds):
        srv = start_nbdkit(args, port=port, stderr=subprocess.DEVNULL)
        proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "run", srv.uri, "--drive", "0x00",
                                 "--expect", PROMPT, "--timeout", "60", "--headless", "--retry-delay", "0.2",
                                 "--screen-out", str(tmp_path / f"screen{n}.txt")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # once the guest prints, the boot is under way; it reads for about 2 s more (6 reads)
            assert select.select([proc.stdout], [], [], 30)[0]
            time.sleep(rnd.random() * 1.0)
            assert proc.poll() is None      # still booting: what it reads next goes through the restart
            srv.proc.kill()
            srv.proc.wait()
            time.sleep(0.3)
            srv = start_nbdkit(args, port=port, stderr=subprocess.DEVNULL)
            _, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
            srv.stop()
        assert proc.returncode == 0, err
        assert (tmp_path / f"screen{n}.txt").read_text() == reference_screen
        survived += 1
    print(f"\nserver restarts survived mid-boot: {survived}/{rounds}")


@settings(max_examples=max(ROUNDS, 3), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kills=st.lists(st.floats(0.0, 0.4), min_size=1, max_size=3), command=st.sampled_from(["deploy", "restore"]))
def test_kill9_during_deploy_or_restore_then_resume_gives_the_source(tmp_path_factory, kills, command):
    """kill -9 at random moments of a CLI deploy/restore from a slowed nbdkit; each kill leaves the lock
    free (the kernel drops it with the process) and the resumed copy ends byte-identical to the source."""
    tmp = tmp_path_factory.mktemp("k9")
    source = make_source(tmp / "src.img", 24 << 20, seed=len(kills))
    srv = start_nbdkit(["--filter=delay", "file", str(tmp / "src.img"), "rdelay=20ms"],
                       stderr=subprocess.DEVNULL)
    cmd = [sys.executable, "-m", "nbdboot", command, "-q", srv.uri, str(tmp / "t.img")]
    try:
        for delay in kills:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            proc.kill()
            proc.wait(10)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        srv.stop()
    assert result.returncode == 0, result.stderr
    assert (tmp / "t.img").read_bytes() == source
    print(f"\nkill -9 x{len(kills)} during {command}, resumed: target identical to the source")


# -- malformed bytes from a server ----------------------------------------------------------------------

class JunkHandshake:
    """Greets with `greeting` then answers every option with `junk` (then closes)."""

    def __init__(self, greeting: bytes, junk: bytes):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.uri = f"nbd://127.0.0.1:{self.listener.getsockname()[1]}"
        self.greeting, self.junk = greeting, junk
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        try:
            s, _ = self.listener.accept()
        except OSError:
            return
        try:
            s.sendall(self.greeting)
            s.settimeout(2)
            s.recv(4096)
            s.sendall(self.junk)
            time.sleep(0.3)
        except OSError:
            pass
        finally:
            s.close()

    def close(self):
        self.listener.close()


_NEWSTYLE = P.encode_newstyle_greeting()


@settings(max_examples=60, deadline=None)
@given(greeting=st.one_of(st.binary(max_size=40), st.just(_NEWSTYLE)),
       junk=st.one_of(
           st.binary(max_size=300),
           # a well-formed option reply header with random type and length, then random payload
           st.builds(lambda opt, typ, n, tail: struct_reply(opt, typ, n) + tail,
                     st.sampled_from([P.OPT_STRUCTURED_REPLY, P.OPT_SET_META_CONTEXT, P.OPT_GO, 7]),
                     st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.binary(max_size=200))))
def test_a_malformed_handshake_gives_a_typed_error_only(greeting, junk):
    srv = JunkHandshake(greeting, junk)
    try:
        try:
            NbdClient(srv.uri, reconnect=False, timeout=1, connect_timeout=1).close()
        except NbdError:
            pass
    finally:
        srv.close()


def struct_reply(opt: int, reply_type: int, length: int) -> bytes:
    import struct
    return struct.pack(">QIII", P.REP_MAGIC, opt, reply_type, length)
