"""Slices end only where Unicorn's state is exact: a CPU-bound boot gives the same answer every time.

bootimages/cpuwork decodes an LZ-style stream into 1 MiB and takes its CRC-32 in protected mode, with no BIOS
call or port access for the whole computation, interrupts off (`off`) or on with IRQ0 through its own IDT
(`on`). Every slice of it is ended by the watchdog's block stop (here every 2 ms, hundreds of times a boot),
at whatever instruction the guest is on. An asynchronous stop would resume some of those at a stale EIP and the
checksum would change from boot to boot; QEMU+SeaBIOS gives the expected value.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import nbdboot.machine.machine as machine_module
import nbdboot.machine.slicing as slicing
from nbdboot.disk.file import FileDevice
from nbdboot.pc import PC
from support import qemuref
from support.images import image
from support.servers import require_tool

BOOTS = 20


def boot_in_nbdboot(path) -> tuple[dict, int]:
    machine = PC()
    machine.bios.disk.add_drive(0x80, FileDevice(str(path), read_only=True))
    machine.power_on(0x80)
    stops = 0
    deadline = time.monotonic() + 60
    while b"END cpuwork" not in machine.debugcon.output:
        assert time.monotonic() < deadline, bytes(machine.debugcon.output).decode("latin-1")
        machine.run_slice()
        stops += machine.stop_reason == "watchdog"
    return qemuref.parse_results(bytes(machine.debugcon.output).decode("latin-1"))["CPU.1"], stops


@pytest.fixture(scope="module")
def qemu_answers():
    require_tool("qemu-system-i386")
    answers = {}
    for variant in ("off", "on"):
        result = qemuref.boot(str(image(f"cpuwork-{variant}")), expect_debug="END cpuwork", readonly=True,
                              timeout=120, poll_interval=0.05)
        assert result.matched, result.debug
        answers[variant] = result.results["CPU.1"]
    return answers


@pytest.mark.parametrize("variant", ["off", "on"])
def test_cpu_bound_boot_gives_the_same_checksum_every_time(variant, qemu_answers, monkeypatch):
    require_tool("nasm")
    monkeypatch.setattr(machine_module, "SLICE_SECONDS", 0.002)
    expected = qemu_answers[variant]
    assert expected["BYTES"] == 1 << 20
    total_stops = 0
    sums = []
    ticks = []
    for _ in range(BOOTS):
        result, stops = boot_in_nbdboot(image(f"cpuwork-{variant}"))
        total_stops += stops
        sums.append(result["SUM"])
        ticks.append(result["TICKS"])
        assert result["BYTES"] == expected["BYTES"]
    assert sums == [expected["SUM"]] * BOOTS
    if variant == "on":
        # Not every boot: with a faster Unicorn (docs/perf.md) a boot can finish within one 55 ms tick.
        assert sum(ticks) > 0, "no timer interrupt reached the guest while it computed"
    else:
        assert ticks == [0] * BOOTS
    assert total_stops >= 10 * BOOTS   # the stops did land inside the computation


def test_block_stop_without_native_code_is_exact_too(qemu_answers, monkeypatch):
    # Where no executable page can be had, the stop swaps Unicorn's own C functions in a hook's callback field.
    monkeypatch.setattr(slicing, "_native_callback", lambda: None)
    monkeypatch.setattr(machine_module, "SLICE_SECONDS", 0.002)
    for _ in range(3):
        result, stops = boot_in_nbdboot(image("cpuwork-off"))
        assert result["SUM"] == qemu_answers["off"]["SUM"]
        assert stops >= 10


@pytest.mark.slow
def test_syslinux_loads_ipxe_every_time(nbdkit):
    # iPXE's decompressor ran into asynchronous stops: 1 boot in 10 passed before the block stop, 10 in 10 after.
    server = nbdkit("-r", "file", str(image("cpu-ipxe")))
    for _ in range(3):
        result = subprocess.run([sys.executable, "-m", "nbdboot", "run", server.uri, "--expect", "Press Ctrl-B",
                                 "--timeout", "60", "--headless"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-3000:]}"
        assert "iPXE initialising devices...ok" in result.stdout
