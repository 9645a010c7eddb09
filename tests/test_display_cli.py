"""`nbdboot run`'s screen and serial options at the command line: screenshots of a text-mode boot
(FreeDOS from a real nbdkit), --screenshot-on-fail, COM1 to a TCP listener, and clear one-line errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from nbdboot.console.render import read_png
from nbdboot.errors import EXIT_EXPECT_FAILED, EXIT_IO, EXIT_USAGE
from support.images import image


def nbdboot(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbdboot", "run", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_text_screenshot_shows_the_prompt(nbdkit, freedos_img, tmp_path):
    server = nbdkit("-r", "file", str(freedos_img))
    shot = tmp_path / "dos.png"
    never = tmp_path / "never.png"
    proc = nbdboot("--server", server.hostport, "--drive", "0x00", "--expect", "A:\\>", "--timeout", "60",
                   "--headless", "--screenshot", str(shot), "--screenshot-on-fail", str(never))
    assert proc.returncode == 0, proc.stderr
    assert not never.exists()
    width, height, rgb = read_png(shot.read_bytes())
    assert (width, height) == (720, 400)
    # Light grey (DAC 2Ah widened to A8h) on black: the "A:\>" prompt is drawn in the first four cells.
    rows = [rgb[y * width * 3:(y + 1) * width * 3] for y in range(height)]
    assert any(b"\xa8\xa8\xa8" in row[:4 * 9 * 3] for row in rows), "no text in the first four columns"
    assert set(rgb[i:i + 3] for i in range(0, len(rgb), 3)) == {b"\0\0\0", b"\xa8\xa8\xa8"}


def test_screenshot_on_fail_written_when_expect_is_missed(nbdkit, freedos_img, tmp_path):
    server = nbdkit("-r", "file", str(freedos_img))
    shot = tmp_path / "fail.png"
    proc = nbdboot("--server", server.hostport, "--drive", "0x00", "--expect", "never printed", "--timeout", "3",
                   "--headless", "--screenshot-on-fail", str(shot))
    assert proc.returncode == EXIT_EXPECT_FAILED
    assert read_png(shot.read_bytes())[:2] == (720, 400)


def test_com1_to_a_tcp_listener(nbdkit, tmp_path):
    server = nbdkit("-r", "file", str(image("syslinux-serial")))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    received = bytearray()

    def take() -> None:
        conn, _ = listener.accept()
        conn.settimeout(60)
        while b"boot:" not in received:
            data = conn.recv(4096)
            if not data:
                break
            received.extend(data)
        conn.close()

    thread = threading.Thread(target=take)
    thread.start()
    try:
        proc = nbdboot("--server", server.hostport, "--serial", f"tcp:127.0.0.1:{port}", "--expect", "boot:",
                       "--expect-on", "serial", "--timeout", "60", "--headless")
    finally:
        thread.join(70)
        listener.close()
    assert proc.returncode == 0, proc.stderr
    assert b"SYSLINUX 6.04" in received and b"boot:" in received


# id: (options, with {tmp} for the test's directory; exit code)
BAD_DISPLAY_OPTIONS = {
    "serial-tcp-not-loopback": (["--serial", "tcp:example.org:4444"], EXIT_USAGE),
    "serial-tcp-bad-port": (["--serial", "tcp:127.0.0.1:port"], EXIT_USAGE),
    "serial-unknown-option": (["--serial", "unix:/x,speed=9"], EXIT_USAGE),
    "serial-stdio-twice": (["--serial", "stdio", "--serial", "stdio"], EXIT_USAGE),
    "serial-three-ports": (["--serial", "null", "--serial", "null", "--serial", "null"], EXIT_USAGE),
    "vnc-not-loopback": (["--vnc", "0.0.0.0:1"], EXIT_USAGE),
    "vnc-bare-port": (["--vnc", "5900"], EXIT_USAGE),
    "serial-unix-nobody-listens": (["--serial", "unix:{tmp}/nobody-listens"], EXIT_IO),
    "serial-file-unwritable": (["--serial", "file:{tmp}/no/such/dir/log"], EXIT_IO),
}


@pytest.mark.parametrize("case", list(BAD_DISPLAY_OPTIONS))
def test_bad_display_options_are_one_line_errors(case, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1440 * 1024))
    options, code = BAD_DISPLAY_OPTIONS[case]
    args = [arg.format(tmp=tmp_path) for arg in options]
    proc = nbdboot("--image", str(disk), "--drive", "0x00", "--timeout", "1", "--headless", *args)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_a_serial_socket_server_never_removes_what_is_not_a_stale_socket(tmp_path):
    # QEMU-style `unix:PATH,server=on` must not unlink a user's file (or /dev/null) to bind there.
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1440 * 1024))
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    proc = nbdboot("--image", str(disk), "--drive", "0x00", "--timeout", "1", "--headless",
                   "--serial", f"unix:{precious},server=on,wait=off")
    assert proc.returncode == EXIT_IO, proc.stderr
    assert "not a socket" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert precious.read_text() == "keep me"


def test_vnc_port_in_use_is_an_error(tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1440 * 1024))
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        assert port >= 5900, "the kernel's ephemeral ports start above 5900"
        proc = nbdboot("--image", str(disk), "--drive", "0x00", "--timeout", "1", "--headless",
                       "--vnc", f":{port - 5900}")
    finally:
        busy.close()
    assert proc.returncode == EXIT_IO, proc.stderr
    assert "--vnc" in proc.stderr and "Traceback" not in proc.stderr


def test_serial_stdio_both_ways(nbdkit):
    # SYSLINUX reads its command line from COM1 too: a name typed on stdin once the prompt is out comes back
    # in its error, on stdout; the screen's text stream goes to stderr meanwhile.
    server = nbdkit("-r", "file", str(image("syslinux-serial")))
    proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "run", "--server", server.hostport, "--serial", "stdio",
                             "--expect", "Loading nokernel... failed", "--expect-on", "serial", "--timeout", "60",
                             "--headless"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = b""
    try:
        while b"boot:" not in out:
            chunk = proc.stdout.read1(4096)
            assert chunk, proc.stderr.read().decode()
            out += chunk
        proc.stdin.write(b"nokernel\r")
        proc.stdin.flush()
        rest, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out += rest
    assert proc.returncode == 0, err.decode()
    assert b"boot: nokernel" in out and b"Loading nokernel... failed" in out
    assert b"---- screen ----" in err and b"---- screen ----" not in out
