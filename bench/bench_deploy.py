"""Deploy throughput vs nbdcopy, and what the store costs the guest.

deploy: an export of --data MiB of random data inside a --size sparse disk,
served by `nbdkit -r file` over loopback TCP, copied to a local raw file by
`nbdboot deploy` and by `nbdcopy` (both as commands, start-up included, target
and map removed before each run), alternating, median of --repeat each. Ratio
= nbdcopy's time / ours (goal >= 0.9). Our deploy fsyncs the target before the
map records a block (crash safety) and at the end; nbdcopy does not sync at
all, so a second anchor runs `nbdcopy` then `sync -d TARGET`. A third line
times the same copy_to_target() inside this process, to show how much of the
gap is the interpreter's start-up rather than the copy.

guest I/O: 4 KiB random reads and writes, one at a time, in process, through an
overlay and a live deploy (sync=each and periodic), each followed at once by
the same operations on the plain export (NbdDevice); ratio = plain time / store
time.

boot while deploying: bench-ext127 (a boot image that reads 64 MiB through
int 13h) booted from NBD alone and while a deploy of the same export runs
(goal <= 1.2x); needs `make boot-images`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import tempfile
import time

from bench.common import alternate, env_note, median, nbdkit, print_table, python, require

MiB = 1 << 20


def make_export(path: str, size: int, data: int) -> None:
    rnd = random.Random(1)
    with open(path, "wb") as f:
        f.truncate(size)
        stride = size // (data // MiB)
        for k in range(data // MiB):
            f.seek(k * stride // MiB * MiB)
            f.write(rnd.randbytes(MiB))


def settle() -> None:
    """Write back earlier runs' dirty pages first, so no run pays for another's."""
    os.sync()


def timed(cmd: list[str], cleanup: list[str]) -> float:
    for p in cleanup:
        if os.path.exists(p):
            os.unlink(p)
    settle()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def in_process(uri: str, target: str) -> float:
    from nbdboot.disk.deploy import copy_to_target
    for p in (target, target + ".nbdboot-map"):
        if os.path.exists(p):
            os.unlink(p)
    settle()
    t0 = time.perf_counter()
    copy_to_target(uri, target)
    return time.perf_counter() - t0


def guest_io(uri: str, rw_uri: str, work: str, n: int) -> list[list]:
    from nbdboot.disk.nbd import NbdDevice
    from nbdboot.disk.open import open_guest_disk

    def run(dev, op: str) -> float:
        rnd = random.Random(op)   # reads hit other blocks than the writes: mostly remote
        span = dev.size // 4096
        buf = bytearray(4096)
        t0 = time.perf_counter()
        for _ in range(n):
            off = rnd.randrange(span) * 4096
            if op == "read":
                dev.pread_into(buf, off)
            else:
                dev.pwrite(buf, off)
        dt = time.perf_counter() - t0
        return n / dt

    rows = []
    plain = {"read": NbdDevice(uri), "write": NbdDevice(rw_uri)}
    for op, dev in plain.items():
        run(dev, op)   # untimed: the first pass warms the server's page cache for the others
    try:
        for label, kw in (("overlay sync=each", {"overlay": os.path.join(work, "o1"), "sync": "each"}),
                          ("overlay sync=periodic", {"overlay": os.path.join(work, "o2"), "sync": "periodic"}),
                          ("deploying sync=each", {"deploy_to": os.path.join(work, "d1"), "sync": "each"}),
                          ("deploying sync=periodic", {"deploy_to": os.path.join(work, "d2"), "sync": "periodic"})):
            dev = open_guest_disk(lambda: NbdDevice(uri, read_only=True), **kw)
            try:
                for op in ("write", "read"):   # reads after writes: a mix of local and remote blocks
                    ops = run(dev, op)
                    # The plain export right after, not once at the start: a store's writes leave
                    # writeback running that slows every reader for a while.
                    base = run(plain[op], op)
                    rows.append([label, op, f"{base:.0f}", f"{ops:.0f}", f"{ops / base:.2f}"])
            finally:
                dev.close()
    finally:
        for dev in plain.values():
            dev.close()
    return rows


BOOT_IMAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "bootimages", "build", "bench-ext127.img")


def boot_while_deploying(work: str, extra_mib: int, repeat: int) -> None:
    """Boot bench-ext127 (reads 64 MiB through int 13h) from NBD, alone and during a deploy.

    The export is that image followed by `extra_mib` MiB of random data, so the
    copier has more to do than the guest reads. Both runs are `nbdboot run` in
    process; the deploying one adds --deploy-to, and its time leaves out closing
    the disk (stopping the copier and its last flush come after the guest's text).
    """
    import contextlib
    import io

    import nbdboot.api as run_cmd  # _open_disk(options, factory, source_uri) lives here
    from nbdboot.cli import main as cli_main

    if not os.path.exists(BOOT_IMAGE):
        print(f"# boot while deploying: skipped, {BOOT_IMAGE} not built (make boot-images)")
        return
    export = os.path.join(work, "boot-export.img")
    shutil.copyfile(BOOT_IMAGE, export)
    rnd = random.Random(3)
    with open(export, "ab") as f:
        for _ in range(extra_mib):
            f.write(rnd.randbytes(MiB))
    target = os.path.join(work, "boot-target.img")
    with nbdkit("-r", "file", export) as uri:
        argv = ["run", uri, "--drive", "0x80", "--headless", "--expect", "done, see port E9h",
                "--timeout", "120"]
        original = run_cmd._open_disk
        closing: list[float] = []

        def timed_open(args, factory, source_uri):
            disk = original(args, factory, source_uri)
            if args.deploy_to:
                close = disk.close

                def timed_close():
                    t0 = time.perf_counter()
                    close()
                    closing.append(time.perf_counter() - t0)
                disk.close = timed_close
            return disk

        def boot(deploy: bool) -> float:
            for p in (target, target + ".nbdboot-map"):
                if os.path.exists(p):
                    os.unlink(p)
            settle()
            run_cmd._open_disk = timed_open
            try:
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    rc = cli_main(argv + (["--deploy-to", target] if deploy else []))
                dt = time.perf_counter() - t0
            finally:
                run_cmd._open_disk = original
            if rc != 0:
                raise RuntimeError(f"boot failed with exit code {rc}")
            return dt - (closing.pop() if deploy else 0.0)

        times = alternate({"boot alone": lambda: boot(False), "boot while deploying": lambda: boot(True)},
                          repeat)
    alone, deploying = median(times["boot alone"]), median(times["boot while deploying"])
    print(f"# boot bench-ext127 (64 MiB of int 13h reads) from a {64 + 1 + extra_mib} MiB export, "
          f"median of {repeat}")
    print_table(["run", "median s", "runs"],
                [[k, f"{median(v):.3f}", " ".join(f"{x:.3f}" for x in v)] for k, v in times.items()])
    print(f"boot while deploying / boot alone: {deploying / alone:.2f} (goal <= 1.2; times exclude "
          f"the deploying run's close, which stops the copier and flushes)")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench deploy -- ", description=__doc__)
    ap.add_argument("--size", type=int, default=4096, help="export size in MiB (default 4096)")
    ap.add_argument("--data", type=int, default=512, help="MiB of data in it (default 512)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ops", type=int, default=2000, help="guest I/O operations per measurement")
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--boot-extra", type=int, default=512,
                    help="MiB of data after the boot image in the boot-while-deploying export")
    ap.add_argument("--only", choices=("copy", "boot"), default=None,
                    help="only the deploy/guest-I/O part, or only boot-while-deploying")
    args = ap.parse_args(argv)
    require("nbdcopy")
    print(f"# {env_note()}")
    work = tempfile.mkdtemp(prefix="bench-deploy-", dir=args.dir)
    try:
        if args.only == "boot":
            boot_while_deploying(work, args.boot_extra, args.repeat)
            return 0
        src = os.path.join(work, "export.img")
        make_export(src, args.size * MiB, args.data * MiB)
        ours_t = os.path.join(work, "ours.img")
        theirs_t = os.path.join(work, "theirs.img")
        with nbdkit("-r", "file", src) as uri:
            times = alternate({
                "nbdboot deploy": lambda: timed([python(), "-m", "nbdboot", "deploy", "-q", uri, ours_t],
                                                [ours_t, ours_t + ".nbdboot-map"]),
                "nbdcopy": lambda: timed(["nbdcopy", uri, theirs_t], [theirs_t]),
                "deploy in-process": lambda: in_process(uri, ours_t),
                "nbdcopy + sync": lambda: timed(["sh", "-c", f"nbdcopy '{uri}' '{theirs_t}' && sync -d '{theirs_t}'"],
                                                [theirs_t]),
            }, args.repeat, warmup=True)
            ours, theirs = median(times["nbdboot deploy"]), median(times["nbdcopy"])
            synced = median(times["nbdcopy + sync"])
            print(f"# deploy: {args.data} MiB of data in a {args.size} MiB export, median of {args.repeat}")
            print_table(["tool", "median s", "MiB/s (data)", "runs"],
                        [[k, f"{median(v):.3f}", f"{args.data / median(v):.0f}",
                          " ".join(f"{x:.3f}" for x in v)] for k, v in times.items()])
            print(f"deploy/nbdcopy throughput ratio: {theirs / ours:.2f} (goal >= 0.9)")
            print(f"deploy/(nbdcopy + sync) ratio: {synced / ours:.2f} (both end with the data on disk)")
            inproc = median(times["deploy in-process"])
            print(f"in-process deploy/nbdcopy ratio: {theirs / inproc:.2f} "
                  f"(without Python start-up, {ours - inproc:.2f}s of the command's time)")
            print(f"# guest 4 KiB random I/O, {args.ops} ops each, ops/s")
            rw = os.path.join(work, "rw.img")
            subprocess.run(["cp", "--sparse=always", src, rw], check=True)
            with nbdkit("file", rw) as rw_uri:
                print_table(["store", "op", "plain export", "through store", "ratio"],
                            guest_io(uri, rw_uri, work, args.ops))
        if args.only is None:
            boot_while_deploying(work, args.boot_extra, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0
