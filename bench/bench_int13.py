"""int 13h benchmarks: nbdboot against QEMU+SeaBIOS booting the same image from the same nbdkit.

Bench sectors (bootimages/bench/): ext127 reads 64 MiB through AH=42h in 127-sector calls (1033 calls), ext1 reads
8 MiB one sector a call (16384 calls). The ladder: each rung L2-L7 to its expected text (the rungs, images and
texts of tests/support/ladder.py). Goal: nbdboot at least as fast as QEMU.

Both sides are timed the same way: wall time from starting the emulator's process to its result on the screen
(`bench NAME: done`, which the sector prints only after reading every sector, or the rung's last text). QEMU
(qemu-system-i386 -accel tcg, IDE disk or CD) is polled with QMP pmemsave every 20 ms and timed to the poll that
sees the text; nbdboot (`nbdboot run URI --expect TEXT --headless`, a fresh process) checks its screen every 20 ms
and is timed to its exit, so Python's start-up, the final screen and the NBD disconnect count against it. Runs
alternate between the two; figures are medians.

The sectors also time themselves in BIOS ticks (port E9h); QEMU's are shown as "guest" for comparison with
docs/int13.md. nbdboot's are not used: its guest clock moves only between CPU slices, and a count slice holds a
whole bench of int 13h calls, so the tick count does not advance.

    python3 -m bench int13 [-- --runs N | --quick] [--only sectors|ladder] [ext127] [ext1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
try:
    from bench.common import alternate, env_note, nbdboot_run_seconds, nbdkit, print_table, require
except ImportError:  # standalone: python3 bench/bench_int13.py
    sys.path.insert(0, str(ROOT))
    from bench.common import alternate, env_note, nbdboot_run_seconds, nbdkit, print_table, require

from support import qemuref  # noqa: E402  (tests/support/qemuref.py: the reference PC)

SECTOR = 512
TICK_HZ = 1193182 / 65536
POLL = 0.02
TIMEOUT = 300.0
BENCHES = {"ext127": (1033, 131072), "ext1": (16384, 16384)}  # calls, sectors: what bench.inc reads


def build(relative: str) -> Path:
    subprocess.run(["make", "-s", relative], cwd=ROOT, check=True)
    return ROOT / relative


def nbdboot_run(uri: str, text: str, media: str = "auto", timeout: float = TIMEOUT) -> float:
    return nbdboot_run_seconds([uri, "--media", media, "--expect", text, "--headless", "--timeout", str(timeout)])


def qemu_run(uri: str, text: str, media: str = "hdd", guest: list | None = None) -> float:
    result = qemuref.boot(uri, [text], media=media, readonly=True, poll_interval=POLL, timeout=TIMEOUT)
    if not result.matched:
        raise RuntimeError(f"QEMU did not show {text!r}:\n{result.text()}")
    if guest is not None:
        guest.append(result.results.get("B.1"))  # the sector's E9h report, written before its screen line
    return result.elapsed


def bench_sectors(names: list[str], runs: int) -> None:
    rows = []
    ratios = []
    for name in names:
        calls, sectors = BENCHES[name]
        image = build(f"bootimages/build/bench-{name}.img")
        text = f"bench {name}: done"
        guest: list = []
        with nbdkit("-r", "file", str(image)) as uri:
            times = alternate({"nbdboot": lambda: nbdboot_run(uri, text, "hdd"),
                               "qemu+seabios": lambda: qemu_run(uri, text, "hdd", guest)}, repeat=runs)
        nbytes = sectors * SECTOR
        ours, anchor = statistics.median(times["nbdboot"]), statistics.median(times["qemu+seabios"])
        for runner, seconds, series in (("nbdboot", ours, times["nbdboot"]),
                                        ("qemu+seabios", anchor, times["qemu+seabios"])):
            rows.append([f"{name} {runner}", f"{seconds:.2f}", f"{nbytes / 1e6 / seconds:.2f}",
                         f"{calls / seconds:.0f}", " ".join(f"{t:.2f}" for t in series)])
        reported = [g for g in guest if g and g["TICKS"]]
        if reported:
            ticks = statistics.median(g["TICKS"] for g in reported) / TICK_HZ
            rows.append([f"{name} qemu guest", f"{ticks:.2f}", f"{nbytes / 1e6 / ticks:.2f}",
                         f"{calls / ticks:.0f}", "(BIOS ticks, E9h; no start-up)"])
        ratios.append(f"{name}: nbdboot/qemu throughput = {anchor / ours:.2f}x")
    print(f"int 13h bench sectors, wall from process start to `done` (median of {runs}; {env_note()}):")
    print_table(["bench", "s", "MB/s", "calls/s", "runs (s)"], rows)
    for line in ratios:
        print(line + " (goal >= 1.00x)")


def bench_ladder(runs: int) -> None:
    from support.images import IMAGES
    from support.ladder import LADDER

    rows = []
    for rung, (name, media, expect) in LADDER.items():
        image = build(f"bootimages/build/{IMAGES['l6-grub' if name == 'l7-grub' else name]}")
        text = expect[-1]
        with nbdkit("-r", "file", str(image)) as uri:
            try:
                # A rung nbdboot cannot pass yet (L3/L4 wait at SYSLINUX's prompt) fails in a minute, not five.
                times = alternate({"nbdboot": lambda: nbdboot_run(uri, text, media, timeout=60),
                                   "qemu+seabios": lambda: qemu_run(uri, text, media)}, repeat=runs)
            except RuntimeError as e:
                rows.append([rung, repr(text), "-", "-", "-", f"failed: {str(e)[-60:]}", ""])
                continue
        ours, anchor = statistics.median(times["nbdboot"]), statistics.median(times["qemu+seabios"])
        rows.append([rung, repr(text), f"{ours:.2f}", f"{anchor:.2f}", f"{ours / anchor:.2f}x",
                     " ".join(f"{t:.2f}" for t in times["nbdboot"]),
                     " ".join(f"{t:.2f}" for t in times["qemu+seabios"])])
    print(f"ladder, wall from process start to the rung's text (median of {runs}; {env_note()}):")
    print_table(["rung", "text", "nbdboot s", "qemu s", "nbdboot/qemu", "nbdboot runs", "qemu runs"], rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench int13", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per side, alternating (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run per side")
    parser.add_argument("--only", choices=("sectors", "ladder"), help="just the bench sectors or just the ladder")
    parser.add_argument("benches", nargs="*", metavar="BENCH", help="ext127 and/or ext1 (default: both)")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    if runs < 1:
        parser.error("--runs must be at least 1")
    unknown = [b for b in args.benches if b not in BENCHES]
    if unknown:
        parser.error(f"unknown bench sector(s) {' '.join(unknown)}; known: {' '.join(BENCHES)}")
    require("nbdkit")
    require("qemu-system-i386")
    if args.only != "ladder":
        bench_sectors(args.benches or list(BENCHES), runs)
    if args.only != "sectors":
        bench_ladder(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
