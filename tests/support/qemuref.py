"""The reference PC: QEMU (TCG) with SeaBIOS booting a disk served by a real NBD server on loopback.

`boot()` starts qemu-system-i386 on an nbd:// URI, watches the VGA text screen (a QMP `pmemsave` of B8000h) and
the port E9h debug console until the expected text shows up or the timeout passes, and always kills QEMU.
`parse_results()` turns the `T <id> KEY=HEX ...` lines our conformance and bench sectors write to port E9h into a
dict, for these tests and for the same sectors under nbdboot's emulator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

SCREEN_BASE = 0xB8000
SCREEN_COLS, SCREEN_ROWS = 80, 25
SCREEN_BYTES = SCREEN_COLS * SCREEN_ROWS * 2

# How the export is attached, and which device SeaBIOS boots first.
MEDIA = {
    "hdd": ("if=ide,index=0,media=disk", "c"),
    "cd": ("if=ide,index=2,media=cdrom", "d"),
    "floppy": ("if=floppy,index=0", "a"),
}


class QemuError(RuntimeError):
    """QEMU could not be started or its monitor stopped answering."""


@dataclass
class BootResult:
    screen: str  # 25 lines of 80 characters, cp437, trailing blanks kept
    debug: str  # everything written to port E9h
    elapsed: float  # wall seconds from QEMU's start to the match (or the timeout)
    matched: bool
    qemu_log: str = ""
    polls: int = 0
    results: dict = field(default_factory=dict)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.splitlines())


def decode_screen(raw: bytes) -> str:
    chars = bytes(raw[0::2])[: SCREEN_COLS * SCREEN_ROWS].ljust(SCREEN_COLS * SCREEN_ROWS, b" ")
    text = chars.replace(b"\0", b" ").decode("cp437")
    return "\n".join(text[i : i + SCREEN_COLS] for i in range(0, len(text), SCREEN_COLS))


class Qmp:
    """Minimal QMP client over a unix socket: one command at a time, events skipped."""

    def __init__(self, path: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:  # QEMU creates the socket file a moment before it listens on it
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(path)
                break
            except ConnectionRefusedError:
                self.sock.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
        self.buf = b""
        self._message()  # greeting
        self.execute("qmp_capabilities")

    def _message(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QemuError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command: str, **arguments) -> object:
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._message()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QemuError(f"QMP {command}: {reply['error'].get('desc')}")

    def close(self) -> None:
        self.sock.close()


def _protect(media: str, readonly: bool) -> str:
    # QEMU's IDE disks and floppies refuse read-only nodes, so a read-only export gets a throw-away overlay.
    if not readonly:
        return ""
    return ",readonly=on" if media == "cd" else ",snapshot=on"


def _wait_for_socket(path: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise QemuError(f"qemu exited early with status {proc.returncode}")
        if os.path.exists(path):
            return
        time.sleep(0.01)
    raise QemuError(f"QMP socket {path} did not appear after {timeout}s")


def boot(
    uri: str,
    expect: str | list[str] | None = None,
    *,
    media: str = "hdd",
    expect_debug: str | None = None,
    timeout: float = 30.0,
    memory_mb: int = 64,
    readonly: bool = False,  # the export is read-only (nbdkit -r): writes go to a QEMU overlay
    poll_interval: float = 0.1,
    extra_args: tuple[str, ...] = (),
    keys_after: tuple[str, list[str]] | None = None,
    keys: list[tuple[str, list[str]]] = (),
    screendump: str | None = None,  # once matched, QEMU's `screendump` of the display to this PPM file
    screen_until=None,  # also wait until screen_until(read_ppm(screendump)) is true (polls screendumps)
    serial: str = "none",  # QEMU's -serial for COM1 (e.g. "null": a port that is there)
    debug_actions: list[tuple[str | Callable[[str], bool], list[tuple[str, dict]]]] = (),
) -> BootResult:
    """Boot `uri` (an nbd:// URI or an image path) as `media` and wait until each string in `expect` has been on
    the screen, in order, and `expect_debug` (if given) is in the E9h output. Returns what was seen; never raises on a timeout
    (check `matched`), only when QEMU itself fails.
    `keys_after` = (text, qcodes): press those keys (QMP send-key) once `text` shows up in the E9h output.
    `keys`: (screen text, chord) pairs typed in order, each once its text is on the screen; a chord is QEMU key
    names pressed together (QMP send-key qcodes: ["ret"], ["ctrl", "b"]).
    `debug_actions`: (E9h text or a test of the E9h output, QMP commands as (name, arguments)) pairs, each run in
    order once its text is in the E9h output or its test passes (e.g. input-send-event for mouse moves)."""
    qemu = shutil.which("qemu-system-i386")
    if not qemu:
        raise QemuError("qemu-system-i386 is not installed: run scripts/install-deps")
    if media not in MEDIA:
        raise ValueError(f"media must be one of {sorted(MEDIA)}")
    wanted = [expect] if isinstance(expect, str) else list(expect or [])
    drive_opts, boot_order = MEDIA[media]
    with tempfile.TemporaryDirectory(prefix="qemuref-") as tmp:
        qmp_path = os.path.join(tmp, "qmp.sock")
        debug_path = os.path.join(tmp, "e9.log")
        screen_path = os.path.join(tmp, "screen.bin")
        cmd = [
            qemu, "-accel", "tcg", "-m", str(memory_mb), "-nodefaults", "-vga", "std", "-display", "none",
            "-no-reboot", "-nic", "none", "-serial", serial, "-parallel", "none",
            "-qmp", f"unix:{qmp_path},server=on,wait=off",
            "-chardev", f"file,id=e9,path={debug_path}",
            "-device", "isa-debugcon,iobase=0xe9,chardev=e9",
            "-drive", f"file={uri},format=raw,{drive_opts}" + _protect(media, readonly),
            "-boot", f"order={boot_order},menu=off",
            *extra_args,
        ]
        log = open(os.path.join(tmp, "qemu.log"), "w+b")
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        qmp = None
        screen, debug, matched, polls = "", "", False, 0
        pending_keys = list(keys)
        pending_actions = list(debug_actions)
        try:
            _wait_for_socket(qmp_path, proc, 10.0)
            qmp = Qmp(qmp_path)
            deadline = start + timeout
            while True:
                qmp.execute("pmemsave", val=SCREEN_BASE, size=SCREEN_BYTES, filename=screen_path)
                polls += 1
                screen = decode_screen(Path(screen_path).read_bytes())
                debug = Path(debug_path).read_bytes().decode("latin-1") if os.path.exists(debug_path) else ""
                now = time.monotonic()
                if keys_after is not None and keys_after[0] in debug:
                    qmp.execute("send-key", keys=[{"type": "qcode", "data": k} for k in keys_after[1]])
                    keys_after = None
                while pending_actions and (pending_actions[0][0](debug) if callable(pending_actions[0][0])
                                           else pending_actions[0][0] in debug):
                    for name, arguments in pending_actions.pop(0)[1]:
                        qmp.execute(name, **arguments)
                while pending_keys and pending_keys[0][0] in screen:
                    chord = pending_keys.pop(0)[1]
                    qmp.execute("send-key", keys=[{"type": "qcode", "data": k} for k in chord])
                # In order, as --expect: each text once seen counts (a kernel's line scrolls away before the
                # installer's first screen shows).
                while wanted and wanted[0] in screen:
                    wanted.pop(0)
                if not wanted and (expect_debug is None or expect_debug in debug):
                    if screendump:
                        qmp.execute("screendump", filename=screendump)
                    if screen_until is None or screen_until(read_ppm(Path(screendump).read_bytes())):
                        matched = True
                        break
                if now >= deadline or proc.poll() is not None:
                    break
                time.sleep(poll_interval)
        except (OSError, json.JSONDecodeError, QemuError) as e:
            failure = e
        else:
            failure = None
        finally:
            elapsed = time.monotonic() - start
            exited = proc.poll() is not None
            if qmp is not None:
                qmp.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            log.seek(0)
            qemu_log = log.read().decode(errors="replace")
            log.close()
        if failure is not None and not exited:
            raise QemuError(f"QEMU failed: {failure}\n{qemu_log}") from failure
        if os.path.exists(debug_path):
            debug = Path(debug_path).read_bytes().decode("latin-1")
    return BootResult(screen, debug, elapsed, matched, qemu_log, polls, parse_results(debug))


def read_ppm(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB) of the binary PPM (P6, maxval 255) QEMU's `screendump` writes."""
    fields = []
    at = 0
    while len(fields) < 4:
        while data[at:at + 1].isspace():
            at += 1
        end = at
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[at:end])
        at = end
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError("not a P6 PPM with maxval 255")
    width, height = int(fields[1]), int(fields[2])
    return width, height, data[at + 1:at + 1 + 3 * width * height]


_LINE = re.compile(r"^T (\S+)((?: [A-Z0-9_]+=[0-9A-Fa-f]+)*)\s*$")


def parse_results(debug: str) -> dict[str, dict[str, int]]:
    """`T 5.1 AH=30 CF=0 BX=AA55` lines -> {"5.1": {"AH": 0x30, "CF": 0, "BX": 0xAA55}}; other lines are ignored.
    A case reported twice keeps its last report."""
    results: dict[str, dict[str, int]] = {}
    for line in debug.replace("\r", "").split("\n"):
        m = _LINE.match(line)
        if not m:
            continue
        fields = {}
        for item in m.group(2).split():
            key, value = item.split("=", 1)
            fields[key] = int(value, 16)
        results[m.group(1)] = fields
    return results


def checksum(data: bytes) -> int:
    """The guest's checksum over little-endian dwords: a += d; b += a (mod 2**32); returns b."""
    a = b = 0
    padded = data.ljust(-(-len(data) // 4) * 4, b"\0")
    for d in memoryview(padded).cast("I"):
        a = (a + d) & 0xFFFFFFFF
        b = (b + a) & 0xFFFFFFFF
    return b
