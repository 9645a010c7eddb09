"""NASM boot sectors that report through port E9h: how BIOS contracts are tested and debugged."""

from __future__ import annotations

import subprocess
import time

from nbdboot.disk.file import FileDevice
from nbdboot.machine.machine import GuestCrash
from nbdboot.pc import PC

# Macros every test sector may use: PUTC/PRINT to port E9h, HEX16 of a register.
PRELUDE = r"""
        cpu 386
        bits 16
        org 7C00h
%macro PUTC 1
        push ax
        mov al, %1
        out 0E9h, al
        pop ax
%endmacro
%macro PRINT 1
        push si
        jmp %%over
%%msg:  db %1, 0
%%over: mov si, %%msg
        call print_e9
        pop si
%endmacro
%macro HEX16 1
        push ax
        mov ax, %1
        call hex16_e9
        pop ax
%endmacro
        jmp start
print_e9:
        push ax
.next:  lodsb
        test al, al
        jz .done
        out 0E9h, al
        jmp .next
.done:  pop ax
        ret
hex16_e9:
        push cx
        push ax
        mov cx, 4
.digit: rol ax, 4
        push ax
        and al, 0Fh
        add al, '0'
        cmp al, '9'
        jbe .out
        add al, 7
.out:   out 0E9h, al
        pop ax
        loop .digit
        pop ax
        pop cx
        ret
start:
"""

EPILOGUE = r"""
        times 510 - ($ - $$) db 0
        dw 0AA55h
"""


def assemble(tmp_path, body: str, extra: str = "") -> bytes:
    src = tmp_path / "sector.asm"
    out = tmp_path / "sector.bin"
    src.write_text(PRELUDE + body + EPILOGUE + extra)
    subprocess.run(["nasm", "-f", "bin", "-o", str(out), str(src)], check=True, capture_output=True)
    return out.read_bytes()


def run_sector(tmp_path, body: str, *, extra: str = "", disk_size: int = 1440 * 1024, drive: int = 0x00,
               until: str = "DONE", timeout: float = 10.0, memory_mb: int = 16, keys=None,
               no_reboot: bool = False):
    """Boot `body` as the boot sector of a blank disk; return (machine, E9h output)."""
    image = assemble(tmp_path, body, extra)
    disk = tmp_path / "disk.img"
    disk.write_bytes(image + bytes(disk_size - len(image)))
    machine = PC(memory_mb=memory_mb)
    machine.no_reboot = no_reboot
    device = FileDevice(disk)
    machine.bios.disk.add_drive(drive, device)
    if keys:
        machine.bios.keyboard.type_keys(keys)
    machine.power_on(drive)
    deadline = time.monotonic() + timeout
    while until.encode() not in machine.debugcon.output:
        if time.monotonic() > deadline:
            raise AssertionError(f"{until!r} not reported; E9h output: {machine.debugcon.output.decode(errors='replace')!r}")
        try:
            machine.run_slice()
        except GuestCrash:
            if until.encode() in machine.debugcon.output:
                break  # reported, then stopped for good (a final cli; hlt)
            raise
    return machine, machine.debugcon.output.decode(errors="replace")
