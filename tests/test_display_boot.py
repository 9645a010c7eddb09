"""Real boot loaders on the screen and on the serial port, through the CLI and a real nbdkit:
SYSLINUX prompting on COM1, vesamenu.c32 and GRUB's gfxterm menu compared with QEMU's screendump,
GRUB's menu on COM1 over a unix socket and keys sent back to it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from nbdboot.console.render import read_png
from nbdboot.errors import EXIT_EXPECT_FAILED
from support import qemuref
from support.images import image
from support.servers import require_tool


def nbdboot(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbdboot", "run", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_syslinux_prompts_on_com1(nbdkit, tmp_path):
    server = nbdkit("-r", "file", str(image("syslinux-serial")))
    log = tmp_path / "com1.txt"
    log.write_text("the previous run's output\n")
    proc = nbdboot("--server", server.hostport, "--serial", f"file:{log}", "--expect", "boot:",
                   "--expect-on", "serial", "--timeout", "60", "--headless")
    assert proc.returncode == 0, proc.stderr
    text = log.read_bytes().decode("latin-1")
    assert "SYSLINUX 6.04" in text and text.rstrip().endswith("boot:")
    assert "previous run" not in text  # emptied first, as QEMU's -serial file: does


def test_expect_on_chooses_where_to_look(nbdkit, tmp_path):
    # The SAY line is printed on both; the screen's "EDD" banner only on the screen.
    server = nbdkit("-r", "file", str(image("syslinux-serial")))
    proc = nbdboot("--server", server.hostport, "--expect", "SYSLINUX 6.04 EDD", "--expect-on", "serial",
                   "--timeout", "4", "--headless")
    assert proc.returncode == EXIT_EXPECT_FAILED
    proc = nbdboot("--server", server.hostport, "--expect", "SYSLINUX 6.04 EDD", "--expect-on", "screen",
                   "--timeout", "60", "--headless")
    assert proc.returncode == 0, proc.stderr


def same_as_qemu(nbdkit, path, shot, media: str) -> None:
    """QEMU booting the same image reaches the same picture (pixel for pixel) within 60 s."""
    require_tool("qemu-system-i386")
    ours = read_png(shot.read_bytes())
    server = nbdkit("-r", "file", str(path))
    dump = shot.with_suffix(".qemu.ppm")
    result = qemuref.boot(server.uri, media=media, readonly=True, screendump=str(dump), serial="null",
                          screen_until=lambda theirs: theirs == ours, timeout=60, poll_interval=0.5)
    theirs = qemuref.read_ppm(dump.read_bytes())
    assert theirs[:2] == ours[:2]
    assert result.matched, "QEMU's screen never matched ours"


def test_vesamenu_menu_screenshot_matches_qemu(nbdkit, tmp_path):
    path = image("syslinux-vesamenu")
    server = nbdkit("-r", "file", str(path))
    shot = tmp_path / "vesamenu.png"
    # The menu goes to COM1 too (SERIAL 0): its last words mark a finished screen.
    proc = nbdboot("--server", server.hostport, "--expect", "Press [Tab] to edit options", "--expect-on", "serial",
                   "--timeout", "60", "--headless", "--screenshot", str(shot))
    assert proc.returncode == 0, proc.stderr
    width, height, rgb = read_png(shot.read_bytes())
    assert (width, height) == (640, 480)
    same_as_qemu(nbdkit, path, shot, "hdd")


def test_grub_menu_on_com1_socket_and_gfxterm(nbdkit, tmp_path):
    path = image("grub-display")
    server = nbdkit("-r", "file", str(path))
    sock_path = str(tmp_path / "com1.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "run", "--server", server.hostport, "--media", "cd",
                             "--serial", f"unix:{sock_path}", "--expect", "Second entry", "--expect", "grub>",
                             "--expect-on", "serial", "--timeout", "90", "--headless"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        listener.settimeout(30)
        conn, _ = listener.accept()
        conn.settimeout(1)
        received = b""
        deadline = time.monotonic() + 90
        while b"Second entry" not in received and time.monotonic() < deadline:
            try:
                received += conn.recv(65536)
            except socket.timeout:
                pass
        assert b"NBDBOOT GRUB menu entry" in received
        gfx_ready = received
        time.sleep(0.5)
        conn.sendall(b"c")  # GRUB's command line, typed on the serial line
        while b"grub>" not in received and time.monotonic() < deadline:
            try:
                received += conn.recv(65536)
            except socket.timeout:
                pass
        assert b"grub>" in received[len(gfx_ready):]
        assert proc.wait(60) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()


def test_grub_gfxterm_menu_screenshot_matches_qemu(nbdkit, tmp_path):
    path = image("grub-display")
    server = nbdkit("-r", "file", str(path))
    shot = tmp_path / "grub.png"
    proc = nbdboot("--server", server.hostport, "--media", "cd", "--expect", "Second entry", "--expect-on", "serial",
                   "--timeout", "90", "--headless", "--screenshot", str(shot))
    assert proc.returncode == 0, proc.stderr
    assert read_png(shot.read_bytes())[:2] == (800, 600)
    same_as_qemu(nbdkit, path, shot, "cd")


def _kolibri_desktop(shot) -> str | None:
    """What is missing from KolibriOS's desktop in the PNG at `shot` (None: it is all there)."""
    width, height, rgb = read_png(shot.read_bytes())
    if (width, height) != (800, 600):
        return f"screen is {width}x{height}, not the 800x600 picked in its menu"
    bar = rgb[3 * width * (height - 10):3 * width * (height - 9)]
    if bar.count(b"\xdf\xdb\xdf") <= width // 2:
        return "no taskbar"
    top = rgb[:3 * width * 300]
    if len({top[i:i + 3] for i in range(0, len(top), 3 * 7)}) <= 200:
        return "no desktop"
    return None


def test_kolibrios_reaches_its_vesa_desktop(nbdkit, tmp_path):
    # KolibriOS's boot menu picks 800x600x24 from our VBE mode list; its kernel (paging, LFB) draws the
    # desktop: a gradient with icons above the light grey taskbar. Looked at once a second, up to a
    # deadline, as a person watching would (a loaded machine draws it later, not differently).
    import nbdboot
    from support.images import SHARED
    image_path = SHARED / "images" / "kolibri.img"
    work = tmp_path / "kolibri.img"
    work.write_bytes(image_path.read_bytes())
    server = nbdkit("file", str(work))
    shot = tmp_path / "kolibri.png"
    missing = "nothing drawn yet"
    with nbdboot.boot(server=server.hostport, drive=0x00, keys="{enter}") as pc:
        deadline = time.monotonic() + 90
        while missing and time.monotonic() < deadline:
            pc.run(1.0)
            pc.screenshot(shot)
            missing = _kolibri_desktop(shot)
        assert "Version of VESA: 3.0" in pc.transcript
    assert missing is None, missing
