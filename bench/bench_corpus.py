"""The compatibility corpus: time to each case's text under nbdboot and under QEMU+SeaBIOS.

Every case of tests/support/corpus.py (images from `make corpus-images`), served read-only by nbdkit on loopback, booted
by `nbdboot run` and by QEMU+SeaBIOS with the same keys, alternating; wall time from process start to the case's
last text. A run that does not reach the text within the case's budget is shown as its outcome (exit code or
timeout) instead of a time, with the reason tests/support/corpus.py gives. Cases marked slow (Linux, the Debian
installer) need --long.

    python3 -m bench corpus [-- --runs N | --quick] [--long] [CASE...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from bench.common import nbdkit, print_table, require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

MEDIA_ARGS = {"hdd": [], "cd": ["--media", "cd"], "floppy": ["--drive", "0x00"]}


def build(target: str) -> str:
    subprocess.run(["make", "-s", target], cwd=ROOT, check=True)
    return os.path.join(ROOT, target)


def nbdboot_once(case, uri: str) -> float | str:
    argv = [sys.executable, "-m", "nbdboot", "run", uri, *MEDIA_ARGS[case.media], "--headless",
            "--memory", str(case.memory_mb - 1), "--timeout", str(case.nbdboot_timeout)]
    for text, keys in case.keys_after_text():
        argv += ["--expect", text, "--keys", keys]
    argv += ["--expect", case.expect[-1]]
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    screen = result.stdout.rsplit("---- screen ----", 1)[-1]
    accepted = (0, 5) if case.gives_up else (0,)
    if result.returncode in accepted and all(text in screen for text in case.expect):
        return elapsed
    return "timeout" if result.returncode == 1 else f"exit {result.returncode}"


def qemu_once(case, uri: str) -> float | str:
    from support import qemuref

    result = qemuref.boot(uri, case.expect, media=case.media, readonly=True, timeout=case.qemu_timeout,
                          memory_mb=case.memory_mb, keys=case.qemu_keys())
    return result.elapsed if result.matched else "timeout"


def summary(values: list) -> str:
    times = [v for v in values if isinstance(v, float)]
    if len(times) == len(values):
        return f"{statistics.median(times):.2f}"
    failures = sorted({v for v in values if not isinstance(v, float)})
    return "/".join(failures) + (f" ({len(times)}/{len(values)} ran {statistics.median(times):.2f})" if times else "")


def main(argv: list[str]) -> int:
    from support.corpus import CASES

    parser = argparse.ArgumentParser(prog="bench corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per side, alternating (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run per side")
    parser.add_argument("--long", action="store_true", help="include the slow cases (Linux, the Debian installer)")
    parser.add_argument("cases", nargs="*", metavar="CASE", help="case names (default: all)")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    if runs < 1:
        parser.error("--runs must be at least 1")
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {' '.join(unknown)}; known: {' '.join(CASES)}")
    names = args.cases or [n for n, c in CASES.items() if args.long or not c.slow]
    require("nbdkit")
    require("qemu-system-i386")
    rows = []
    for name in names:
        case = CASES[name]
        image = build(f"bootimages/build/{case.image}")
        results: dict[str, list] = {"nbdboot": [], "qemu": []}
        with nbdkit("-r", "file", image) as uri:
            for r in range(runs):
                order = ("nbdboot", "qemu") if r % 2 == 0 else ("qemu", "nbdboot")
                for side in order:
                    once = nbdboot_once if side == "nbdboot" else qemu_once
                    results[side].append(once(case, uri))
        ours, anchor = results["nbdboot"], results["qemu"]
        ratio = ""
        if all(isinstance(v, float) for v in ours + anchor):
            ratio = f"{statistics.median(ours) / statistics.median(anchor):.2f}x"
        status = "passes" if not case.xfail else ("xfail (flaky)" if case.flaky else "xfail")
        rows.append([name, repr(case.expect[-1])[:40], summary(ours), summary(anchor), ratio, status])
        print(f"  {name}: nbdboot {summary(ours)}, qemu {summary(anchor)}", file=sys.stderr, flush=True)
    print(f"compatibility corpus, wall s from process start to the case's text (median of {runs}):")
    print_table(["case", "text", "nbdboot s", "qemu s", "nbdboot/qemu", "status"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
