"""`nbdboot run` end to end: real nbdkit, the embedded server, typed commands, exit codes."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from nbdboot.cli import main
from support.servers import free_port

PROMPT = "A:\\>"


def run_cli(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "nbdboot", "run", *argv],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def freedos_copy(freedos_img, tmp_path):
    path = tmp_path / "freedos.img"
    shutil.copyfile(freedos_img, path)
    return path


def test_freedos_boots_from_nbdkit_as_floppy(nbdkit, freedos_img, tmp_path):
    server = nbdkit("--filter=cow", "file", str(freedos_img))
    screen = tmp_path / "screen.txt"
    result = run_cli("--server", server.hostport, "--drive", "0x00", "--expect", PROMPT,
                     "--timeout", "60", "--headless", "--screen-out", str(screen))
    assert result.returncode == 0, result.stderr
    assert "FreeDOS kernel" in result.stdout            # streamed while booting
    assert "---- screen ----" in result.stdout           # final screen printed
    assert screen.read_text().rstrip().endswith(PROMPT)


def test_freedos_boots_through_uri_and_image(nbdkit, freedos_img, freedos_copy):
    server = nbdkit("--filter=cow", "file", str(freedos_img))
    assert main(["run", server.uri, "--drive", "0x00", "--expect", PROMPT, "--timeout", "60",
                 "--headless"]) == 0
    result = run_cli("--image", str(freedos_copy), "--drive", "auto", "--expect", PROMPT,
                     "--timeout", "60", "--headless")
    assert result.returncode == 0, result.stderr


def test_typed_freedos_commands(freedos_copy, tmp_path, capsys):
    screen = tmp_path / "screen.txt"
    keys = "ver\\ndir\\nmem\\ntype autoexec.bat\\n"
    code = main(["run", "--image", str(freedos_copy), "--drive", "0x00", "--headless",
                 "--expect", PROMPT, "--keys", keys,
                 "--expect", "FreeCom version",                 # ver
                 "--expect", "bytes free",                      # dir
                 "--expect", 'Bad command or filename - "MEM"',  # this floppy has no MEM.EXE
                 "--expect", "ECHO Welcome to FreeDOS",         # type autoexec.bat
                 "--expect", PROMPT, "--timeout", "60", "--screen-out", str(screen)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "COMMAND  COM" in out and "AUTOEXEC BAT" in out      # the dir listing
    assert "set PATH=A:\\FDOS;A:\\GAMES" in out
    assert screen.read_text().rstrip().endswith(PROMPT)


def test_expectation_not_met_exits_1_with_screen(freedos_copy, capsys):
    code = main(["run", "--image", str(freedos_copy), "--drive", "0x00", "--headless",
                 "--expect", "no such text anywhere", "--timeout", "3"])
    captured = capsys.readouterr()
    assert code == 1
    assert "---- screen ----" in captured.out and PROMPT in captured.out
    assert "no such text anywhere" in captured.err


@pytest.mark.parametrize("argv, message", [
    ([], "exactly one of"),
    (["--server", "127.0.0.1:1", "--image", "x.img"], "exactly one of"),
    (["--image", "/nonexistent.img"], "no such image"),
    (["--image", "IMG", "--keys", "{nosuchkey}"], "unknown key"),
    (["--image", "IMG", "--memory", "0"], "--memory"),
    (["--image", "IMG", "--timeout", "-1"], "--timeout"),
])
def test_bad_usage_is_one_line_and_distinct_code(argv, message, freedos_copy, capsys):
    argv = [str(freedos_copy) if a == "IMG" else a for a in argv]
    code = main(["run", *argv])
    err = capsys.readouterr().err
    assert code in (2, 6)
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_drive_option_is_usage_error():
    result = run_cli("--image", "x.img", "--drive", "0x7f")
    assert result.returncode == 2
    assert "drive" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_server_exits_3():
    result = run_cli("--server", f"127.0.0.1:{free_port()}", "--timeout", "5", "--headless", timeout=60)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr


def test_disk_without_boot_signature_exits_5(tmp_path):
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1024 * 1024))
    result = run_cli("--image", str(blank), "--timeout", "10", "--headless")
    assert result.returncode == 5
    assert "boot signature" in result.stderr and "Traceback" not in result.stderr


def test_guest_crash_exits_4_with_report(tmp_path):
    sector = bytearray(512)
    sector[0:3] = b"\x0f\x0b\x90"      # ud2: invalid opcode, no handler installed
    sector[510:512] = b"\x55\xaa"
    image = tmp_path / "crash.img"
    image.write_bytes(bytes(sector) + bytes(1024 * 1024 - 512))
    result = run_cli("--image", str(image), "--timeout", "10", "--headless")
    assert result.returncode == 4
    assert "invalid opcode" in result.stderr
    assert "CS:IP 0000:7c00" in result.stderr and "ud2" in result.stderr
    assert "last interrupts" in result.stderr and "Traceback" not in result.stderr


def test_server_lost_mid_boot_exits_3(nbdkit, freedos_img):
    # The server goes for good once the kernel runs. After the reconnect budget (one try here) the guest hears
    # 04h, as from iPXE, and prints its own error; the run then misses its prompt and ends with the NBD error.
    from support.freedos import KERNEL_BANNER, boot_freedos, read_until
    server = nbdkit("--filter=delay", "--filter=cow", "file", str(freedos_img), "rdelay=30ms")
    proc = boot_freedos(server.hostport, 10, "--retries", "1", "--retry-delay", "0")
    try:
        read_until(proc, KERNEL_BANNER, 30)
        server.stop()
        out, err = (stream.decode(errors="replace") for stream in proc.communicate(timeout=60))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, err
    screen = out.rsplit("---- screen ----", 1)[-1]   # what the guest had shown is still printed
    assert "Bad or missing Command Interpreter" in screen        # FreeDOS's own words for the failed reads
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert lines[0].startswith("nbdboot: int13: drive 0x00 read of ") and " failed: gave up after 1 " in lines[0]
    assert lines[-1].startswith("nbdboot: error: gave up after 1 reconnect")


@pytest.mark.parametrize("after", [0.0, 1.5])   # mid-boot (int 13h busy), at the prompt (idle in int 16h)
def test_sigint_ends_a_headless_run_with_130(freedos_copy, after):
    import select
    import signal
    import time
    proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "run", "--image", str(freedos_copy),
                             "--drive", "0x00", "--timeout", "60", "--headless"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert select.select([proc.stdout], [], [], 30)[0]    # the guest is printing: the boot is under way
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert err.strip() == "nbdboot: interrupted"
    assert "---- screen ----" in out


def _printing_then(tmp_path, ending: bytes, name: str):
    """A boot sector that prints DONE through int 10h teletype, then runs `ending`."""
    code = b""
    for ch in b"DONE":
        code += b"\xb4\x0e\xb0" + bytes((ch,)) + b"\xcd\x10"   # mov ah,0Eh; mov al,ch; int 10h
    sector = bytearray(512)
    sector[:len(code) + len(ending)] = code + ending
    sector[510:512] = b"\x55\xaa"
    image = tmp_path / f"{name}.img"
    image.write_bytes(bytes(sector) + bytes(1024 * 1024 - 512))
    return image


@pytest.mark.parametrize("ending, name, code", [(b"\xfa\xf4", "halt", 4), (b"\xcd\x18", "int18", 5)])
def test_text_printed_before_the_guest_halts_or_gives_up_meets_expect(tmp_path, ending, name, code):
    # The guest says what the test waits for, then halts with interrupts off (or calls int 18h) in the same
    # slice: the text was printed, so --expect is met; a later --expect ends with the failure's own exit code.
    image = _printing_then(tmp_path, ending, name)
    met = run_cli("--image", str(image), "--timeout", "10", "--headless", "--expect", "DONE")
    assert met.returncode == 0, met.stderr
    assert run_cli("--image", str(image), "--timeout", "10", "--headless").returncode == code
    more = run_cli("--image", str(image), "--timeout", "10", "--headless", "--expect", "DONE", "--expect", "NEVER")
    assert more.returncode == code, more.stderr
