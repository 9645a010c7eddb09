"""The A20 gate: with A20 off, FFFF:0010 reaches 0000:0000 (the 8086 wrap-around), through the
8042's output port, its DDh/DFh commands, port 92h bit 1 and int 15h 2400h-2402h."""

from __future__ import annotations

from nbdboot.debug.sectors import run_sector

# CHECK prints 'W' when FFFF:0010 is 0000:0000 (wraps), 'S' when they are separate memory.
BODY = r"""
        xor ax, ax
        mov ds, ax
        mov ax, 0FFFFh
        mov es, ax
        jmp tests
check:  mov word [0], 1111h
        mov word [es:10h], 2222h
        cmp word [0], 2222h
        je .wrap
        PUTC 'S'
        ret
.wrap:  PUTC 'W'
        mov word [0], 0
        ret
kbc_wait:
        in al, 64h
        test al, 2
        jnz kbc_wait
        ret
tests:  call check                  ; POST leaves A20 on
        call kbc_wait
        mov al, 0D1h                ; 8042 output port: A20 off (bit 1), not reset (bit 0)
        out 64h, al
        call kbc_wait
        mov al, 0DDh
        out 60h, al
        call check
        mov al, 0DFh                ; HP command: A20 on
        out 64h, al
        call check
        in al, 92h                  ; fast A20 off, on
        and al, 0FCh
        out 92h, al
        call check
        or al, 2
        out 92h, al
        call check
        mov ax, 2400h               ; BIOS: off, query, on, query
        int 15h
        call check
        mov ax, 2402h
        int 15h
        add al, '0'
        PUTC al
        mov ax, 2401h
        int 15h
        call check
        mov ax, 2402h
        int 15h
        add al, '0'
        PUTC al
        PRINT " DONE"
        sti
        hlt
"""


def test_a20_gate_wraps_the_hma_when_off(tmp_path):
    machine, out = run_sector(tmp_path, BODY)
    assert out == "SWSWSW0S1 DONE", out
    assert machine.cpu.a20
