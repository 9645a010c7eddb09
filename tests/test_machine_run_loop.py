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


def test_a_busy_guest_gets_irq1_soon_and_each_pit_tick_once(tmp_path):
    """A guest computing with IF=1 under a 1 kHz PIT (Linux's HZ=250 boot was the case found): IRQ1 raised by
    the 8042 comes within a tick or two, behind IRQ0's handler, not after it; and 1000 ticks take a second of
    guest time, not a burst of held-back ones (the RTC's seconds count them)."""
    from nbdboot.debug.sectors import run_sector
    body = r"""
        cli
        xor ax, ax
        mov ds, ax
        mov word [8 * 4], irq0
        mov [8 * 4 + 2], ax
        mov word [9 * 4], irq1
        mov [9 * 4 + 2], ax
        mov al, 34h             ; PIT channel 0, mode 2, 1193 clocks: 1 kHz
        out 43h, al
        mov ax, 1193
        out 40h, al
        mov al, ah
        out 40h, al
        mov al, 0FCh            ; IRQ0 and IRQ1 only
        out 21h, al
        sti
        mov word [ticks], 0
wait1:  cmp word [ticks], 5     ; some ticks first: the machine is in its 1 kHz rhythm
        jb wait1
        mov al, 0D2h            ; the 8042 sends 55h as if from the keyboard: IRQ1
        out 64h, al
        mov al, 55h
        out 60h, al
        mov bx, [ticks]
busy:   cmp byte [got], 0       ; computing, IF=1, no hlt
        jne seen
        cmp word [ticks], 3000
        jb busy
seen:   mov ax, [when]
        sub ax, bx
        HEX16 ax                ; ticks between the D2h and IRQ1
        PUTC ' '
        mov al, 0               ; RTC seconds now, then after 1000 ticks
        out 70h, al
        in al, 71h
        mov cl, al
        mov word [ticks], 0
busy2:  cmp word [ticks], 1000
        jb busy2
        mov al, 0
        out 70h, al
        in al, 71h
        mov ah, cl
        HEX16 ax                ; BCD seconds: before (high byte), after (low byte)
        PRINT " DONE"
        cli
        hlt
irq0:   inc word [cs:ticks]
        push ax
        mov al, 20h
        out 20h, al
        pop ax
        iret
irq1:   push ax
        in al, 60h
        mov byte [cs:got], 1
        mov ax, [cs:ticks]
        mov [cs:when], ax
        mov al, 20h
        out 20h, al
        pop ax
        iret
ticks:  dw 0
when:   dw 0
got:    db 0
"""
    _, out = run_sector(tmp_path, body, timeout=30)
    waited, seconds = out.split()[:2]
    assert int(waited, 16) <= 2, out
    before, after = (int(seconds[i:i + 2], 10) for i in (0, 2))
    # 1000 ticks in about a second as the RTC counts (the old loop, one tick per 20 ms slice, took 20 s; a
    # starved host loses some, as QEMU does)
    assert (after - before) % 60 <= 4, out
