"""Guest CPU speed: CPU-bound boots timed against QEMU+SeaBIOS (TCG), same image, same nbdkit.

Cases (images from bootimages/images.mk, `make cpubench-images`):
  cpuwork-off   our NASM workload (bootimages/cpuwork): LZ decode of 16 MiB + CRC-32, protected mode, IF=0
  cpuwork-on    the same with interrupts on (IRQ0 through its own IDT)
  grub          GRUB 2 (grub-mkrescue, no configuration) as a CD, to its `grub>` prompt
  linux         the Debian installer's i386 kernel from SYSLINUX (earlyprintk=vga), to "Linux version"
  memtest       memtest86+ 6 (Debian, ia32) from SYSLINUX, to its first "Status: Testing"

nbdboot is timed as `nbdboot run --server ... --expect TEXT --headless` (a new process, Python start-up
included), QEMU from its start to the text on its screen (monitor `pmemsave` every 20 ms). Runs alternate;
the median is reported. A case that misses its deadline is reported as `>DEADLINE`.

Guest MIPS for the cpuwork cases: their instruction count is measured once per bench run on the 1 MiB
variant (a block hook counting each executed block's instructions with Capstone; `rep` iterations count
one each), scaled by the output size (the work per output byte is the same), divided by the run time.

    python3 -m bench cpu [-- --repeat N --case NAME ... --libunicorn DIR ...]

--libunicorn DIR adds nbdboot runs with another build of Unicorn (the binding loads DIR/libunicorn.so.2
when LIBUNICORN_PATH names DIR), alternating with the installed one and QEMU: see docs/perf.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:
    from bench.bench_boot import qemu_seconds_to_text
    from bench.common import env_note, nbdkit, print_table, require
except ImportError:  # standalone: python3 bench/bench_cpu.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.bench_boot import qemu_seconds_to_text
    from bench.common import env_note, nbdkit, print_table, require

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "bootimages" / "build"
QEMU_MEDIA = {"hdd": "if=ide,index=0,media=disk,snapshot=on",  # the export is read-only: writes stay in QEMU
              "cd": "if=ide,index=2,media=cdrom"}
QEMU_BOOT = {"hdd": "c", "cd": "d"}
CPUWORK_SCALE = 16  # the bench variants produce 16 MiB, the counted one 1 MiB


@dataclass
class Case:
    name: str
    image: str
    media: str
    expect: str
    deadline: float


CASES = [
    Case("cpuwork-off", "cpuwork-off-16m.img", "hdd", "cpuwork off-16m: done", 120),
    Case("cpuwork-on", "cpuwork-on-16m.img", "hdd", "cpuwork on-16m: done", 120),
    Case("grub", "cpu-grub.iso", "cd", "grub>", 120),
    Case("linux", "cpu-linux.img", "hdd", "Linux version", 240),
    Case("memtest", "cpu-memtest.img", "hdd", "Status: Testing", 120),
]


def nbdboot_seconds(hostport: str, case: Case, libunicorn: str | None = None) -> float | None:
    """`libunicorn`: a directory holding another libunicorn.so.2 (the binding's LIBUNICORN_PATH)."""
    cmd = [sys.executable, "-m", "nbdboot", "run", "--server", hostport, "--media", case.media,
           "--expect", case.expect, "--timeout", str(case.deadline), "--headless"]
    env = {k: v for k, v in os.environ.items() if k != "LIBUNICORN_PATH"}
    if libunicorn:
        env["LIBUNICORN_PATH"] = libunicorn
    start = time.perf_counter()
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode == 1 and "timeout" in result.stderr:
        return None
    if result.returncode != 0:
        # counted as a missed deadline; the rest of the bench still runs
        lines = result.stderr.strip().splitlines()
        print(f"bench cpu: nbdboot run ({case.name}{', ' + libunicorn if libunicorn else ''}) failed "
              f"(exit {result.returncode}): {lines[-1] if lines else ''}", file=sys.stderr, flush=True)
        return None
    return elapsed


def qemu_seconds(uri: str, case: Case) -> float | None:
    return qemu_seconds_to_text(["-drive", f"file={uri},format=raw,{QEMU_MEDIA[case.media]}",
                                 "-boot", f"order={QEMU_BOOT[case.media]},menu=off"], case.expect, case.deadline)


def cpuwork_instructions() -> int:
    """Instructions the 1 MiB cpuwork executes from power-on to its report, times CPUWORK_SCALE."""
    from unicorn import UC_HOOK_BLOCK
    import capstone
    from nbdboot.disk.file import FileDevice
    from nbdboot.pc import PC

    machine = PC()
    machine.bios.disk.add_drive(0x80, FileDevice(str(BUILD / "cpuwork-off.img"), read_only=True))
    machine.power_on(0x80)
    modes = {False: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16),
             True: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)}
    per_block: dict[int, int] = {}
    total = 0

    def count(uc, address, size, _user):
        nonlocal total
        n = per_block.get(address)
        if n is None:
            code = bytes(uc.mem_read(address, size))
            n = per_block[address] = sum(1 for _ in modes[machine.cpu.protected].disasm_lite(code, address))
        total += n

    machine.cpu.uc.hook_add(UC_HOOK_BLOCK, count)
    deadline = time.monotonic() + 120
    while b"END cpuwork" not in machine.debugcon.output:
        if time.monotonic() > deadline:
            raise RuntimeError("cpuwork did not finish while counting its instructions")
        machine.run_slice()
    return total * CPUWORK_SCALE


def fmt(seconds: float | None, deadline: float) -> str:
    return f">{deadline:.0f}" if seconds is None else f"{seconds:.2f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench cpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--case", action="append", choices=[c.name for c in CASES],
                        help="run only this case (repeatable)")
    parser.add_argument("--libunicorn", action="append", default=[], metavar="DIR",
                        help="also time nbdboot with the libunicorn.so.2 in DIR (e.g. `make unicorn-fast`'s), "
                             "alternating with the installed one (repeatable)")
    args = parser.parse_args(argv)
    for lib in args.libunicorn:
        if not (Path(lib) / "libunicorn.so.2").is_file():
            print(f"bench cpu: no libunicorn.so.2 in {lib}", file=sys.stderr)
            return 2
    cases = [c for c in CASES if not args.case or c.name in args.case]
    proc = subprocess.run(["make", "-s", "cpubench-images"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"bench cpu: building the images failed:\n{proc.stdout}{proc.stderr}", file=sys.stderr)
        return 2
    require("nbdkit")
    instructions = cpuwork_instructions() if any(c.name.startswith("cpuwork") for c in cases) else 0
    rows = []
    for case in cases:
        ours_names = ["nbdboot"] + [f"nbdboot [{lib}]" for lib in args.libunicorn]
        times: dict[str, list[float | None]] = {name: [] for name in ours_names + ["qemu"]}
        with nbdkit("-r", "file", str(BUILD / case.image)) as uri:
            hostport = uri[len("nbd://"):]
            for r in range(args.repeat):
                runners = [("nbdboot", lambda: nbdboot_seconds(hostport, case))]
                runners += [(name, lambda lib=lib: nbdboot_seconds(hostport, case, lib))
                            for name, lib in zip(ours_names[1:], args.libunicorn)]
                runners.append(("qemu", lambda: qemu_seconds(uri, case)))
                for name, run in (runners if r % 2 == 0 else runners[::-1]):
                    times[name].append(run())
        medians = {}
        for name, values in times.items():
            done = sorted(v for v in values if v is not None)
            # a missed deadline counts as the slowest run
            medians[name] = statistics.median(done + [float("inf")] * (len(values) - len(done)))
        anchor = medians["qemu"]
        for name in ours_names:
            ours = medians[name]
            ratio = "-" if anchor == float("inf") else (f">{case.deadline / anchor:.1f}x" if ours == float("inf")
                                                        else f"{ours / anchor:.2f}x")
            mips = ""
            if case.name.startswith("cpuwork") and ours != float("inf"):
                mips = f"{instructions / ours / 1e6:.0f} / {instructions / anchor / 1e6:.0f}"
            label = case.name + name[len("nbdboot"):]
            rows.append([label, fmt(None if ours == float("inf") else ours, case.deadline),
                         fmt(None if anchor == float("inf") else anchor, case.deadline), ratio, mips,
                         " ".join(fmt(v, case.deadline) for v in times[name]),
                         " ".join(fmt(v, case.deadline) for v in times["qemu"])])
            print(f"bench cpu: {'  '.join(rows[-1])}", file=sys.stderr, flush=True)  # progress
    print(f"guest CPU work, wall s to the expected text ({env_note()}), median of {args.repeat}:")
    print_table(["case", "nbdboot", "qemu", "ratio", "MIPS nbdboot / qemu", "nbdboot runs", "qemu runs"], rows)
    if instructions:
        print(f"cpuwork executes {instructions / 1e6:.0f} M guest instructions (MIPS include start-up)")
    print("goal: each ratio <= 1.5x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
