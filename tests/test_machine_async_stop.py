"""A slice the watchdog ends must leave the CPU where it really is.

A boot sector that fills memory in a loop of `call` and `rep stosb`, with no
interrupts for the slice to end at, is stopped by the watchdog's block stop many
times a second (a 1 ms slice instead of 20 ms here), in the run where the int 19h
hand-off moved CS inside a hook. A stop that resumed at a stale EIP would run
instructions twice and drift the stack, which the program detects and reports on
port E9h (or the CPU would crash outright); an asynchronous stop from the
watchdog thread once did exactly that.
"""

from __future__ import annotations

import subprocess
import time

import pytest

import nbdboot.machine.machine as machine_module
from nbdboot.disk.file import FileDevice
from nbdboot.pc import PC
from support.servers import require_tool

FILL_LOOP = """
        cpu 386
        bits 16
        org 7C00h
        cli
        xor ax, ax
        mov ss, ax
        mov sp, 7C00h
        mov ds, ax
        mov es, ax
        sti
        cld
again:  mov edx, 20000h
        mov cx, 130
        mov al, 0CCh
        call fill
        cmp sp, 7C00h
        jne bad
        jmp again
bad:    mov al, 'X'
        out 0E9h, al
.halt:  hlt
        jmp .halt
fill:   pushad
.sector:
        push cx
        mov eax, edx
        shr eax, 4
        mov es, ax
        mov di, dx
        and di, 0Fh
        mov cx, 512
        mov al, 0CCh
        rep stosb
        pop cx
        add edx, 512
        loop .sector
        popad
        ret
        times 510 - ($ - $$) db 0
        dw 0AA55h
"""


@pytest.fixture
def fill_loop_disk(tmp_path):
    require_tool("nasm")
    src = tmp_path / "fill.asm"
    src.write_text(FILL_LOOP)
    img = tmp_path / "fill.img"
    subprocess.run(["nasm", "-f", "bin", "-o", str(img), str(src)], check=True)
    with open(img, "ab") as f:
        f.truncate(1 << 20)
    return img


def test_watchdog_stops_resume_where_the_cpu_was(fill_loop_disk, monkeypatch):
    monkeypatch.setattr(machine_module, "SLICE_SECONDS", 0.001)   # a watchdog stop every millisecond
    stops = 0
    for _ in range(8):
        machine = PC()
        machine.bios.disk.add_drive(0x80, FileDevice(str(fill_loop_disk), read_only=True))
        machine.power_on(0x80)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            machine.run_slice()
            stops += machine.stop_reason == "watchdog"
            assert b"X" not in machine.debugcon.output, "the stack drifted: instructions ran twice after a stop"
    assert stops >= 20   # the stops did happen
