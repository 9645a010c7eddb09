"""nbdboot copy vs nbdcopy --connections=1, and 512-byte random reads per second.

Copy: a 2 GiB `nbdkit pattern` export over loopback TCP to null:, both tools
run as commands (start-up included), alternating, median of 5 each; the ratio
is nbdcopy's time over ours (>= 1.0 means we are at least as fast). A third
row runs the same copy in this process, without Python's start-up.
Random reads: 512-byte READs at random 512-aligned offsets of the same export,
one at a time and with 64 in flight.
"""

from __future__ import annotations

import argparse
import random
import time

from bench.common import alternate, env_note, median, nbdkit, print_table, python, require, time_command
from nbdboot.nbd.client import NbdClient
from nbdboot.disk.copy import copy


def random_reads(uri: str, depth: int, seconds: float) -> float:
    rng = random.Random(1)
    with NbdClient(uri) as c:
        sectors = c.size // 512
        bufs = [bytearray(512) for _ in range(depth)]
        done = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        if depth == 1:
            buf = bufs[0]
            while time.perf_counter() < deadline:
                for _ in range(256):
                    c.pread_into(buf, rng.randrange(sectors) * 512)
                done += 256
        else:
            free = list(bufs)
            owner = {}
            while time.perf_counter() < deadline:
                for _ in range(256):
                    while not free:
                        cmd = c.next_completed()
                        cmd.check()
                        free.append(owner.pop(cmd.cookie))
                    b = free.pop()
                    cmd = c.aio_pread(b, rng.randrange(sectors) * 512)
                    owner[cmd.cookie] = b
                done += 256
            while c.in_flight:
                c.next_completed().check()
        return done / (time.perf_counter() - t0)


def in_process(uri: str) -> float:
    """The same copy without the interpreter's start-up (how much of the gap is Python booting)."""
    t0 = time.perf_counter()
    copy(uri, "null:")
    return time.perf_counter() - t0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench copy -- ", description=__doc__)
    ap.add_argument("--size", default="2G", help="pattern export size (default 2G)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="per random-read measurement")
    args = ap.parse_args(argv)
    require("nbdcopy")
    print(f"# {env_note()}")
    with nbdkit("pattern", args.size) as uri:
        times = alternate({
            "nbdboot copy": lambda: time_command([python(), "-m", "nbdboot", "copy", uri, "null:"]),
            "nbdcopy --connections=1": lambda: time_command(["nbdcopy", "--connections=1", uri, "null:"]),
            "copy() in-process": lambda: in_process(uri),
        }, args.repeat)
        ours, theirs = median(times["nbdboot copy"]), median(times["nbdcopy --connections=1"])
        size = NbdClient(uri).size
        rows = [[name, f"{median(t):.3f}", f"{size / median(t) / 1e6:.0f}", " ".join(f"{x:.2f}" for x in t)]
                for name, t in times.items()]
        print(f"copy {args.size} pattern over loopback TCP to null:, median of {args.repeat}")
        print_table(["tool", "median s", "MB/s", "runs"], rows)
        print(f"ratio nbdcopy/nbdboot (throughput, >= 1.0 is the goal): {theirs / ours:.2f}x")
        print(f"ratio nbdcopy/copy() in-process: {theirs / median(times['copy() in-process']):.2f}x")
        print()
        r1 = random_reads(uri, 1, args.seconds)
        r64 = random_reads(uri, 64, args.seconds)
        print_table(["512-byte random reads", "reads/s"], [["1 in flight", f"{r1:.0f}"], ["64 in flight", f"{r64:.0f}"]])
    return 0
