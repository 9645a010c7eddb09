"""Helpers shared by benchmarks: alternating timed runs, medians, tables, servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        sys.exit(f"bench: {tool} is not installed (run scripts/install-deps)")
    return path


@contextlib.contextmanager
def nbdkit(*args: str):
    """nbdkit on loopback TCP; yields its nbd:// URI."""
    require("nbdkit")
    port = free_port()
    proc = subprocess.Popen(["nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nbdkit {' '.join(args)} did not start")
                time.sleep(0.02)
        yield f"nbd://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


def nbdboot_run_seconds(args: list[str]) -> float:
    """Wall time of `nbdboot run ARGS` as a new process, Python start-up included
    (what a user waits for); a failed run raises with its one-line error."""
    cmd = [sys.executable, "-m", "nbdboot", "run", *args]
    start = time.perf_counter()
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"nbdboot run {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed


def time_command(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def alternate(runs: dict, repeat: int = 5, warmup: bool = False) -> dict[str, list[float]]:
    """Call each runner (returning seconds) in turn, `repeat` rounds; the order
    rotates every round so neither side always runs on a warm (or cold) machine.
    `warmup`: one untimed round first (the first 1 GiB written to a fresh file
    system takes several times longer, whichever tool writes it)."""
    names = list(runs)
    out: dict[str, list[float]] = {n: [] for n in names}
    if warmup:
        for n in names:
            runs[n]()
    for r in range(repeat):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            out[n].append(runs[n]())
    return out


def median(values) -> float:
    return statistics.median(values)


def print_table(headers: list[str], rows: list[list]) -> None:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def python() -> str:
    return sys.executable or "python3"


def env_note() -> str:
    return f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
