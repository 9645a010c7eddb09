"""Boot benchmark: wall time from launch to FreeDOS's `A:\\>` prompt.

nbdboot (`nbdboot run --server ... --drive 0x00 --expect 'A:\\>' --headless`,
a fresh process each run, so Python start-up is included) against the anchor,
QEMU + SeaBIOS (qemu-system-i386, TCG) booting the same image from the same
nbdkit, its screen read with the monitor's `pmemsave 0xb8000 4000 "file"` every
10 ms. Runs alternate; medians of 5. Goal: ratio <= 0.5.

    python3 -m bench boot [-- --repeat N --image PATH]
    python3 bench/bench_boot.py [--repeat N] [--image PATH]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench.common import alternate, env_note, nbdboot_run_seconds, nbdkit, print_table, require
except ImportError:  # standalone: python3 bench/bench_boot.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.common import alternate, env_note, nbdboot_run_seconds, nbdkit, print_table, require

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = ROOT.parent / "shared" / "images" / "freedos722.img"
PROMPT = "A:\\>"
TIMEOUT = 60.0


def nbdboot_boot(hostport: str) -> float:
    return nbdboot_run_seconds(["--server", hostport, "--drive", "0x00", "--expect", PROMPT,
                                "--timeout", str(TIMEOUT), "--headless"])


class _Monitor:
    """QEMU's human monitor on a unix socket: one command, read up to the next prompt."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self._until_prompt()

    def _until_prompt(self) -> bytes:
        data = b""
        while not data.endswith(b"(qemu) "):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("QEMU monitor closed")
            data += chunk
        return data

    def command(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\n")
        return self._until_prompt()

    def close(self) -> None:
        self.sock.close()


def screen_text(raw: bytes) -> str:
    return bytes(raw[0::2]).replace(b"\0", b" ").decode("cp437")


def qemu_seconds_to_text(drive_args: list[str], text: str, deadline: float) -> float | None:
    """Seconds from starting QEMU+SeaBIOS (TCG, 64 MiB) with `drive_args` until `text` is on its text
    screen (read through the monitor's pmemsave), or None after `deadline` seconds."""
    qemu = require("qemu-system-i386")
    with tempfile.TemporaryDirectory(prefix="bench-qemu-") as tmp:
        mon_path = os.path.join(tmp, "mon.sock")
        screen_path = os.path.join(tmp, "screen.bin")
        cmd = [qemu, "-accel", "tcg", "-m", "64", "-nodefaults", "-vga", "std", "-display", "none",
               "-no-reboot", "-nic", "none", "-monitor", f"unix:{mon_path},server=on,wait=off", *drive_args]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not os.path.exists(mon_path):
                if proc.poll() is not None:
                    raise RuntimeError(f"qemu exited with status {proc.returncode}")
                if time.perf_counter() - start > 10:
                    raise RuntimeError("qemu did not open its monitor")
                time.sleep(0.005)
            monitor = None
            while monitor is None:
                try:
                    monitor = _Monitor(mon_path)
                except (ConnectionRefusedError, FileNotFoundError):
                    time.sleep(0.005)
            try:
                while True:
                    monitor.command(f'pmemsave 0xb8000 4000 "{screen_path}"')
                    if text in screen_text(Path(screen_path).read_bytes()):
                        return time.perf_counter() - start
                    if time.perf_counter() - start > deadline:
                        return None
                    time.sleep(0.01)
            finally:
                monitor.close()
        finally:
            proc.kill()
            proc.wait()


def qemu_boot(uri: str) -> float:
    seconds = qemu_seconds_to_text(["-drive", f"file={uri},format=raw,if=floppy,index=0", "-boot", "order=a,menu=off"],
                                   PROMPT, TIMEOUT)
    if seconds is None:
        raise RuntimeError("QEMU did not reach the prompt")
    return seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench boot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    args = parser.parse_args(argv)
    if not os.path.exists(args.image):
        print(f"bench boot: {args.image} is missing", file=sys.stderr)
        return 2
    require("nbdkit")
    with nbdkit("--filter=cow", "file", args.image) as uri:
        hostport = uri[len("nbd://"):]
        times = alternate({"nbdboot": lambda: nbdboot_boot(hostport),
                           "qemu+seabios": lambda: qemu_boot(uri)}, repeat=args.repeat)
    ours, anchor = statistics.median(times["nbdboot"]), statistics.median(times["qemu+seabios"])
    print(f"boot to {PROMPT} ({os.path.basename(args.image)}, {env_note()}), median of {args.repeat}:")
    print_table(["runner", "median s", "runs"], [
        ["nbdboot run", f"{ours:.3f}", " ".join(f"{t:.2f}" for t in times["nbdboot"])],
        ["qemu+seabios", f"{anchor:.3f}", " ".join(f"{t:.2f}" for t in times["qemu+seabios"])],
    ])
    ratio = ours / anchor
    print(f"ratio nbdboot/qemu = {ratio:.2f}x (goal <= 0.50x)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
