"""Run the int 13h bench sectors under QEMU+SeaBIOS from a real nbdkit and print MB/s and calls/s.

usage: python3 bootimages/bench/run_qemu.py [--runs N] [--ladder] [ext127] [ext1]

--ladder instead times each ladder rung (tests/support/ladder.py) from QEMU's start to its expected
text, the anchor for nbdboot's ladder bench.

The figures come from the guest's own BIOS tick count (18.2 Hz, started on a tick edge), so QEMU's start-up and
POST are not in them; the wall time to the result line is printed beside them. Medians of N runs. This is the
anchor nbdboot's bench compares against (the same sector, image and server).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support import qemuref  # noqa: E402
from support.servers import free_port, wait_for_port  # noqa: E402

TICK_HZ = 1193182 / 65536
SECTOR = 512


def build(name: str) -> Path:
    target = f"bootimages/build/bench-{name}.img"
    subprocess.run(["make", "-s", target], cwd=ROOT, check=True)
    return ROOT / target


def run_once(image: Path) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        ["nbdkit", "-f", "--exit-with-parent", "-r", "-i", "127.0.0.1", "-p", str(port), "file", str(image)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        result = qemuref.boot(f"nbd://127.0.0.1:{port}", [], readonly=True, expect_debug="END bench", timeout=300)
    finally:
        proc.terminate()
        proc.wait(5)
    if not result.matched or "B.1" not in result.results:
        raise SystemExit(f"bench did not finish:\n{result.debug}")
    r = result.results["B.1"]
    if r["ERRORS"]:
        raise SystemExit(f"bench read failed with status {r['STATUS']:02X} after {r['CALLS']} calls")
    seconds = r["TICKS"] / TICK_HZ
    return {
        "calls": r["CALLS"],
        "bytes": r["SECTORS"] * SECTOR,
        "seconds": seconds,
        "wall": result.elapsed,
    }


def time_rung(image: Path, media: str, expect: list[str]) -> float:
    port = free_port()
    proc = subprocess.Popen(
        ["nbdkit", "-f", "--exit-with-parent", "-r", "-i", "127.0.0.1", "-p", str(port), "file", str(image)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        result = qemuref.boot(f"nbd://127.0.0.1:{port}", expect, media=media, readonly=True, timeout=120,
                              poll_interval=0.02)
    finally:
        proc.terminate()
        proc.wait(5)
    if not result.matched:
        raise SystemExit(f"{image.name}: {expect} not seen:\n{result.text()}")
    return result.elapsed


def ladder(runs: int) -> None:
    from support.images import IMAGES  # the rungs, their images and texts live with their tests
    from support.ladder import LADDER

    for rung, (name, media, expect) in LADDER.items():
        file = IMAGES["l6-grub" if name == "l7-grub" else name]
        subprocess.run(["make", "-s", f"bootimages/build/{file}"], cwd=ROOT, check=True)
        times = [time_rung(ROOT / "bootimages/build" / file, media, expect) for _ in range(runs)]
        print(f"{rung}: {statistics.median(times):.2f} s to {expect[-1]!r} (median of {runs}, wall, 20 ms polls)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ladder", action="store_true", help="time the ladder rungs instead")
    parser.add_argument("benches", nargs="*", default=["ext127", "ext1"])
    args = parser.parse_args(argv)
    if args.ladder:
        ladder(args.runs)
        return 0
    for name in args.benches:
        image = build(name)
        runs = [run_once(image) for _ in range(args.runs)]
        seconds = statistics.median(r["seconds"] for r in runs)
        wall = statistics.median(r["wall"] for r in runs)
        calls, nbytes = runs[0]["calls"], runs[0]["bytes"]
        print(
            f"{name}: {nbytes / 2**20:.0f} MiB in {calls} calls, guest {seconds:.2f} s (median of {args.runs}), "
            f"{nbytes / 1e6 / seconds:.2f} MB/s, {calls / seconds:.0f} calls/s; wall to result {wall:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
