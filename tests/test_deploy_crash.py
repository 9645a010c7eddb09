"""kill -9 during a live deploy with guest writes, then resume: the crash-safety property.

After any kill and a resumed run, TARGET must equal the source with a prefix
of the guest's writes applied: every acknowledged write, plus at most the one
in flight, applied whole. The driver (this file run as a script) does the
deploy in a child process and logs each write's index once pwrite returns.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.disks import make_source

SIZE = 24 * 1024 * 1024
NWRITES = 400
HERE = Path(__file__).resolve()


def guest_writes(seed: int):
    """The guest's writes, reproducible from the seed: sub-block, cross-block and large ones."""
    rnd = random.Random(seed)
    out = []
    for i in range(NWRITES):
        length = rnd.choice([512, 512, 4096, 70000, 200000])
        offset = rnd.randrange(0, SIZE - length) // 512 * 512
        out.append((offset, bytes([i % 251 + 1]) * length))
    return out


def apply(source: bytes, writes) -> bytes:
    disk = bytearray(source)
    for off, data in writes:
        disk[off:off + len(data)] = data
    return bytes(disk)


def driver(src: str, target: str, seed: int, ack_log: str, sync: str, finish_only: bool) -> None:
    from nbdboot.disk.file import FileDevice
    from nbdboot.disk.open import open_guest_disk

    def factory():
        return FileDevice(src, read_only=True)

    dev = open_guest_disk(factory, deploy_to=target, sync=sync, connections=2, start_copier=False)
    copier = dev.copier
    copier.chunk = 128 * 1024   # small pieces: the copy lasts long enough to race the guest
    copier.start()
    if not finish_only:
        with open(ack_log, "rb") as f:
            start = len(f.read().splitlines())
        fd = os.open(ack_log, os.O_WRONLY | os.O_APPEND)
        for i, (off, data) in enumerate(guest_writes(seed)):
            if i < start:
                continue
            dev.pwrite(data, off)
            os.write(fd, b"%d\n" % i)   # acknowledged
    copier.wait()
    assert copier.error is None, copier.error
    dev.close()
    print("finished", flush=True)


def run_driver(tmp: Path, *args, kill_after_acks: int | None = None, delay: float = 0.0,
               finish_only: bool = False, sync: str = "each") -> bool:
    """Run the driver; with kill_after_acks, SIGKILL it once that many writes are acknowledged."""
    cmd = [sys.executable, str(HERE), "driver", str(tmp / "src.img"), str(tmp / "target.img"),
           "5", str(tmp / "acks"), sync, "1" if finish_only else "0"]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if kill_after_acks is None:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        return True
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if acked(tmp) >= kill_after_acks:
            break
        time.sleep(0.001)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.returncode != -signal.SIGKILL:
        err = proc.stderr.read().decode()
        assert proc.returncode == 0, err   # it finished before the kill: fine, but never an error
    return False


def acked(tmp: Path) -> int:
    return len((tmp / "acks").read_bytes().splitlines())


def check_prefix(tmp: Path, source: bytes, writes) -> int:
    """Finish a copy of the crashed state without guest writes; it must be source + a prefix."""
    n = acked(tmp)
    probe = tmp / "probe"
    probe.mkdir(exist_ok=True)
    for name in ("target.img", "target.img.nbdboot-map", "src.img"):
        if (tmp / name).exists():
            shutil.copy(tmp / name, probe / name)
    (probe / "acks").write_bytes(b"")
    run_driver(probe, finish_only=True)
    got = (probe / "target.img").read_bytes()
    shutil.rmtree(probe)
    if got == apply(source, writes[:n]):
        return n
    assert n < len(writes) and got == apply(source, writes[:n + 1]), \
        f"target is not the source plus the first {n} (or {n + 1}) guest writes"
    return n + 1


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kills=st.lists(st.tuples(st.integers(0, NWRITES - 1), st.floats(0, 0.02)), min_size=1, max_size=3),
       sync=st.sampled_from(["each", "periodic"]))
def test_kill9_mid_deploy_then_resume_keeps_a_prefix_of_guest_writes(tmp_path_factory, kills, sync):
    tmp = tmp_path_factory.mktemp("crash")
    source = make_source(tmp / "src.img", SIZE)
    writes = guest_writes(5)
    (tmp / "acks").write_bytes(b"")
    for after, delay in sorted(kills):
        if run_driver(tmp, kill_after_acks=after, delay=delay, sync=sync):
            break
        check_prefix(tmp, source, writes)
    run_driver(tmp, sync=sync)   # resume: the remaining writes, the rest of the copy
    assert acked(tmp) == NWRITES
    assert (tmp / "target.img").read_bytes() == apply(source, writes)
    assert (tmp / "src.img").read_bytes() == source


def test_kill9_during_cli_deploy_resumes_to_identical_target(tmp_path):
    source = make_source(tmp_path / "src.img", SIZE, seed=9)
    env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent))
    cmd = [sys.executable, "-m", "nbdboot", "deploy", "-q", "--connections", "1",
           str(tmp_path / "src.img"), str(tmp_path / "t.img")]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    mapfile = tmp_path / "t.img.nbdboot-map"
    deadline = time.monotonic() + 30
    while not mapfile.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "t.img").read_bytes() == source
    assert "copied" in res.stderr


def overlay_driver(src: str, overlay: str, seed: int, ack_log: str, sync: str) -> None:
    from nbdboot.disk.file import FileDevice
    from nbdboot.disk.open import open_guest_disk

    dev = open_guest_disk(lambda: FileDevice(src, read_only=True), overlay=overlay, sync=sync)
    with open(ack_log, "rb") as f:
        start = len(f.read().splitlines())
    fd = os.open(ack_log, os.O_WRONLY | os.O_APPEND)
    for i, (off, data) in enumerate(guest_writes(seed)):
        if i >= start:
            dev.pwrite(data, off)
            os.write(fd, b"%d\n" % i)
    dev.close()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kills=st.lists(st.tuples(st.integers(0, NWRITES - 1), st.floats(0, 0.02)), min_size=1, max_size=3),
       sync=st.sampled_from(["each", "periodic"]))
def test_kill9_during_overlay_writes_keeps_a_prefix(tmp_path_factory, kills, sync):
    from nbdboot.disk.file import FileDevice
    from nbdboot.disk.overlay import open_overlay

    tmp = tmp_path_factory.mktemp("ovl")
    source = make_source(tmp / "src.img", SIZE)
    writes = guest_writes(5)
    (tmp / "acks").write_bytes(b"")
    env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent))
    cmd = [sys.executable, str(HERE), "overlay-driver", str(tmp / "src.img"), str(tmp / "m.ovl"), "5",
           str(tmp / "acks"), sync]
    for after, delay in sorted(kills):
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while proc.poll() is None and acked(tmp) < after and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(delay)
        proc.kill()
        proc.wait(10)
        # What a reopened overlay shows must be the source plus the acked prefix (or one more).
        if not (tmp / "m.ovl").exists():
            assert acked(tmp) == 0   # killed before the overlay was made: nothing to lose
            continue
        shutil.copy(tmp / "m.ovl", tmp / "probe.ovl")
        dev = open_overlay(FileDevice(tmp / "src.img", read_only=True), str(tmp / "probe.ovl"))
        got = dev.pread(SIZE, 0)
        dev.close()
        n = acked(tmp)
        assert got == apply(source, writes[:n]) or (n < NWRITES and got == apply(source, writes[:n + 1]))
    res = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    dev = open_overlay(FileDevice(tmp / "src.img", read_only=True), str(tmp / "m.ovl"))
    try:
        assert dev.pread(SIZE, 0) == apply(source, writes)
    finally:
        dev.close()
    assert (tmp / "src.img").read_bytes() == source


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "overlay-driver":
    sys.path.insert(0, str(HERE.parent.parent))
    overlay_driver(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])

if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "driver":
    _, _, src, target, seed, ack_log, sync, finish = sys.argv
    sys.path.insert(0, str(HERE.parent.parent))
    driver(src, target, int(seed), ack_log, sync, finish == "1")
