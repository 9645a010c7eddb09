"""Nothing hangs: deadlines, signals and exit codes against servers that stall, vanish or lie.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nbdboot.nbd import client as client_module
from nbdboot.nbd.client import NbdClient
from nbdboot.nbd.errors import NbdConnectionError
from support.badnbd import BadServer
from support.servers import free_port


def nbdboot(*argv, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "nbdboot", *argv], capture_output=True, text=True,
                          timeout=timeout, **kw)


def start(*argv):
    return subprocess.Popen([sys.executable, "-m", "nbdboot", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# -- --timeout is a hard deadline ---------------------------------------------------------------

def test_run_timeout_ends_a_run_stuck_on_a_server_that_never_answers():
    # Before: the guest's first read waited 30 s per try and reconnected 10 times; --timeout 20 ran 320 s.
    with BadServer("stall") as srv:
        t0 = time.monotonic()
        result = nbdboot("run", srv.uri, "--timeout", "3", "--headless", "--expect", "never")
        took = time.monotonic() - t0
    assert result.returncode == 3, result.stderr
    assert took < 3 + 2.5, took
    assert result.stderr.strip().splitlines()[-1] == \
        "nbdboot: error: --timeout 3 s reached while waiting for the NBD server"
    assert "Traceback" not in result.stderr


def test_copy_timeout_ends_a_copy_from_a_server_that_never_answers(tmp_path):
    # Before: `copy` from a server that completes the handshake and then stays silent gave up after ~166 s.
    with BadServer("stall") as srv:
        t0 = time.monotonic()
        result = nbdboot("copy", "--timeout", "2", srv.uri, str(tmp_path / "out.img"))
        took = time.monotonic() - t0
    assert result.returncode == 3, result.stderr
    assert took < 2 + 2.5, took
    assert result.stderr.strip().splitlines()[-1] == \
        "nbdboot: error: --timeout 2 s reached while waiting for the NBD server"
    assert "Traceback" not in result.stderr


def test_run_timeout_bounds_reconnects_to_a_server_refusing_connections():
    with BadServer("stall") as srv:
        uri = srv.uri
    # the port is closed now: every reopen is refused, 1 s apart by default, 10 tries
    t0 = time.monotonic()
    result = nbdboot("run", uri, "--timeout", "2", "--headless")
    assert result.returncode == 3 and time.monotonic() - t0 < 4.5, result.stderr


@pytest.mark.parametrize("sig, code, text", [(signal.SIGTERM, 143, "nbdboot: terminated by SIGTERM"),
                                             (signal.SIGHUP, 129, "nbdboot: terminated by SIGHUP"),
                                             (signal.SIGINT, 130, "nbdboot: interrupted")])
@pytest.mark.parametrize("command", ["run", "deploy", "copy"])
def test_signals_end_a_command_blocked_on_a_silent_server_at_once(tmp_path, command, sig, code, text):
    # Before: SIGTERM/Ctrl-C waited for the 15-30 s NBD timeout (then its retries); SIGTERM during deploy said nothing.
    with BadServer("stall") as srv:
        argv = {"run": ["run", srv.uri, "--headless"],
                "deploy": ["deploy", srv.uri, str(tmp_path / "target.img")],
                "copy": ["copy", srv.uri, str(tmp_path / "copy.img")]}[command]
        proc = subprocess.Popen([sys.executable, "-m", "nbdboot", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 20
        while srv.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)   # the first request is out and unanswered
        t0 = time.monotonic()
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=20)
        took = time.monotonic() - t0
    assert proc.returncode == code, err
    assert took < 1.0, took
    assert err.strip().splitlines()[-1] == text
    assert "Traceback" not in err


def test_retry_budget_reports_each_try_and_keeps_the_documented_spacing():
    port = free_port()
    with BadServer("zeros", port=port) as srv:
        client = NbdClient(srv.uri, retries=3, retry_delay=0.2, timeout=5)
    seen = []
    client_module.status_listeners.append(lambda c, text: seen.append((text, time.monotonic())))
    try:
        t0 = time.monotonic()
        with pytest.raises(NbdConnectionError, match="gave up after 3 reconnect attempts: .*refused"):
            client.pread(512, 0)
    finally:
        client_module.status_listeners.clear()
    texts = [t for t, _ in seen]
    assert texts == ["reconnecting (try 1/3)", "reconnecting (try 2/3)", "reconnecting (try 3/3)", None]
    gaps = [b - a for (_, a), (_, b) in zip(seen, seen[1:3])]
    assert all(0.19 <= g < 0.5 for g in gaps), gaps
    assert time.monotonic() - t0 < 2


def test_deploy_progress_says_reconnecting_instead_of_a_falling_speed(tmp_path):
    import io
    from nbdboot.console.progress import Progress
    from nbdboot.disk.store import StoreStats
    stream = io.StringIO()
    progress = Progress(stream, tty=False, interval=0)
    progress.update(1 << 20, 4 << 20, StoreStats())
    first, second = object(), object()  # a copy's connections
    progress.nbd_status(first, "reconnecting (try 3/10)")
    progress.nbd_status(second, None)      # one that still works says nothing of the other
    progress.update(1 << 20, 4 << 20, StoreStats(), force=True)
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "nbdboot:  25.0% 1.0 MiB of 4.0 MiB local: reconnecting (try 3/10)"
    assert "/s" in lines[0] and "/s" not in lines[-1]
    progress.nbd_status(first, None)
    progress.update(2 << 20, 4 << 20, StoreStats(), force=True)
    assert "/s" in stream.getvalue().splitlines()[-1]  # all connections work again: the speed is back


# -- exit codes with a closed stdout -------------------------------------------------------------------

def _with_closed_stdout(*argv):
    r, w = os.pipe()
    os.close(r)            # as `| head -1` once head has gone, or `| true`
    try:
        return subprocess.run([sys.executable, "-m", "nbdboot", *argv], stdout=w, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(w)


def test_a_failed_boot_is_not_reported_as_success_when_stdout_is_closed(tmp_path):
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))
    result = _with_closed_stdout("run", "--image", str(blank), "--timeout", "10", "--headless")
    assert result.returncode == 5, result.stderr
    assert "boot signature" in result.stderr


def test_a_guest_crash_is_not_reported_as_success_when_stdout_is_closed(tmp_path):
    sector = bytearray(512)
    sector[0:2] = b"\x0f\x0b"          # ud2
    sector[510:512] = b"\x55\xaa"
    image = tmp_path / "crash.img"
    image.write_bytes(bytes(sector) + bytes((1 << 20) - 512))
    result = _with_closed_stdout("run", "--image", str(image), "--timeout", "10", "--headless")
    assert result.returncode == 4, result.stderr
    assert "invalid opcode" in result.stderr


def test_ls_into_a_closed_pipe_still_exits_0():
    with BadServer("zeros") as srv:
        result = _with_closed_stdout("ls", srv.uri)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


# -- numbers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "-1"), ("--timeout", "0"),
    ("--retry-delay", "nan"), ("--retry-delay", "inf"), ("--retry-delay", "-1"),
    ("--retries", "-1"), ("--memory", "0"), ("--connections", "0"),
])
def test_run_refuses_nonsense_numbers(tmp_path, option, value):
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))
    extra = ["--overlay", str(tmp_path / "o.ov")] if option == "--connections" else []
    result = nbdboot("run", "--image", str(blank), "--headless", option, value, *extra,
                     *([] if option == "--timeout" else ["--timeout", "5"]))
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert option in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [
    ["deploy", "SRC", "TGT", "--status-interval", "nan"],
    ["deploy", "SRC", "TGT", "--status-interval", "inf"],
    ["deploy", "SRC", "TGT", "--connections", "-3"],
    ["copy", "SRC", "TGT", "--requests", "0"],
])
def test_copy_commands_refuse_nonsense_numbers(tmp_path, argv):
    src = tmp_path / "src.img"
    src.write_bytes(bytes(1 << 20))
    argv = [a.replace("SRC", str(src)).replace("TGT", str(tmp_path / "t.img")) for a in argv]
    result = nbdboot(*argv)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "t.img").exists()


def test_deploy_from_a_server_that_went_away_says_reconnecting_then_gives_up_on_budget(tmp_path, nbdkit):
    # Before: the progress line showed a falling speed and a growing ETA for 195 s, and the end said "no data
    # from the server for 15 s" while the server was refusing connections.
    srv = nbdkit("--filter=rate", "pattern", "64M", "rate=8M")
    proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "deploy", srv.uri, str(tmp_path / "t.img"),
                             "--status-interval", "0.1", "--retry-delay", "0.3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    srv.proc.kill()
    srv.proc.wait()
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode == 3, err
    lines = err.strip().splitlines()
    shown = [line for line in lines if "reconnecting (try " in line]
    tries = {int(line.split("(try ")[1].split("/")[0]) for line in shown}
    assert len(tries) >= 5 and max(tries) >= 9, shown
    after = lines[lines.index(shown[0]):]
    assert not any("/s" in line for line in after), after    # no speed while there is nothing to measure
    assert lines[-1].startswith("nbdboot: error: copy stopped: gave up after 10 reconnect attempts: cannot connect")
    assert lines[-1].endswith("Connection refused (run again to resume)")
    assert took < 9 * 0.3 + 3, took    # the budget: 10 tries, 9 waits of 0.3 s
