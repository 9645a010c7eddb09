"""BIOS services that poll or wait let IRQs in whatever the caller's IF (as SeaBIOS's do), and a guest
that halts for ever, runs into zeroed memory or spins on an exception ends with a crash report."""

from __future__ import annotations

import time

import pytest

from nbdboot.console.keys import parse_keys
from nbdboot.debug.sectors import run_sector
from nbdboot.machine.machine import GuestCrash


def test_int16_peek_with_interrupts_off_sees_timer_ticks(tmp_path):
    # SYSLINUX's `PROMPT 1` + `TIMEOUT`: int 16h AH=11h polled with IF=0 while counting 40:6C.
    body = r"""
        cli
        xor ax, ax
        mov ds, ax
        mov bx, [46Ch]
        add bx, 5
poll:   mov ah, 11h
        int 16h
        jnz fail
        cmp [46Ch], bx
        jb poll
        pushf
        pop ax
        test ax, 200h
        jnz fail
        PRINT "DONE"
        sti
        hlt
fail:   PRINT "FAIL DONE"
        sti
        hlt
"""
    machine, out = run_sector(tmp_path, body, timeout=5)
    assert out == "DONE"
    assert machine.irq_count[0] >= 5


def test_int16_peek_with_interrupts_off_gets_a_typed_key(tmp_path):
    # Enter typed at SYSLINUX's `boot:` prompt: it arrives through IRQ1 while the guest polls with IF=0.
    body = r"""
        cli
poll:   mov ah, 11h
        int 16h
        jz poll
        mov ah, 10h
        int 16h
        HEX16 ax
        PRINT " DONE"
        sti
        hlt
"""
    _, out = run_sector(tmp_path, body, keys=parse_keys(r"\n"), timeout=10)
    assert out == "1C0D DONE"


def test_int15_wait_runs_timer_irqs_and_takes_its_time(tmp_path):
    # int 15h 86h for 1 s with IF=0: the BIOS waits with interrupts on, so 40:6C moves by ~18.
    body = r"""
        cli
        xor ax, ax
        mov ds, ax
        mov bx, [46Ch]
        mov ah, 86h
        mov cx, 0Fh
        mov dx, 4240h
        int 15h
        jc fail
        mov ax, [46Ch]
        sub ax, bx
        HEX16 ax
        PRINT " DONE"
        sti
        hlt
fail:   PRINT "FAIL DONE"
        sti
        hlt
"""
    machine, out = run_sector(tmp_path, body)
    ticks = int(out.split()[0], 16)
    assert 17 <= ticks <= 20, out
    assert machine.clock.now >= 1.0


def _crash(tmp_path, body, limit=3.0):
    start = time.monotonic()
    with pytest.raises(GuestCrash) as info:
        run_sector(tmp_path, body, until="never", timeout=30)
    assert time.monotonic() - start < limit
    return info.value


def test_cli_hlt_followed_by_zeros_ends_halted(tmp_path):
    # A real CPU stays halted: nothing after the hlt may run (it used to run the zeros until --timeout).
    crash = _crash(tmp_path, r"""
        cli
        hlt
        times 64 db 0
""")
    assert "halted with interrupts off" in str(crash)
    assert "hlt" in crash.report


def test_far_jump_into_zeros_is_a_crash(tmp_path):
    crash = _crash(tmp_path, r"""
        jmp 5000h:0000h
""")
    assert "zeroed memory" in str(crash)
    assert "5000:" in crash.report


def test_exception_handler_returning_to_the_fault_is_a_crash(tmp_path):
    # An #UD handler that just irets: the ud2 faults again for ever.
    crash = _crash(tmp_path, r"""
        xor ax, ax
        mov ds, ax
        mov word [6 * 4], handler
        mov [6 * 4 + 2], cs
        ud2
        PRINT "FAIL"
handler: iret
""")
    assert "again and again" in str(crash) and "0x06" in str(crash)


def test_divide_error_handler_returning_to_the_fault_ends_the_run(tmp_path):
    # The same with #DE. (Unicorn turns the second #DE into a double and then a triple fault, as it
    # never clears QEMU's "exception in delivery" state; a real CPU would spin: either way the run ends.)
    crash = _crash(tmp_path, r"""
        xor ax, ax
        mov ds, ax
        mov word [0], handler
        mov [2], cs
        xor cx, cx
        div cx
        PRINT "FAIL"
handler: iret
""")
    assert "0000:7c" in str(crash) or "again and again" in str(crash)


def test_ctrl_break_calls_int_1bh_and_stores_0000(tmp_path):
    # A PC BIOS's int 09h on Ctrl-Break: the ring emptied, 0000h stored, 40:71 bit 7 set, int 1Bh called
    # (DOS hooks it to note the break). The key typed before it is gone; the one after arrives.
    body = r"""
        xor ax, ax
        mov ds, ax
        mov word [1Bh*4], brk
        mov word [1Bh*4+2], 0
        sti
        mov ah, 00h
        int 16h                 ; the first key read: Ctrl-Break's 0000h
        HEX16 ax
        PUTC ' '
        mov al, [471h]
        and al, 80h
        xor ah, ah
        HEX16 ax
        PUTC ' '
        mov ah, 00h
        int 16h                 ; then 'z'
        HEX16 ax
        PRINT " DONE"
        cli
        hlt
brk:    PUTC 'B'
        iret
"""
    _, out = run_sector(tmp_path, body, keys=parse_keys("{ctrl-break}{pause:0.2}z"), timeout=10)
    assert out == "B0000 0080 2C7A DONE", out


def test_the_tsc_counts_the_time_a_halted_guest_skipped(tmp_path):
    # A guest that calibrates the TSC against the PIT and then sleeps on timer ticks: idle time skipped
    # ahead on the virtual clock must show in the TSC as well (the host's counter would not see it).
    body = r"""
        xor ax, ax
        mov ds, ax
        sti
        mov bx, [46Ch]
edge:   hlt
        cmp [46Ch], bx
        je edge
        db 0Fh, 31h             ; rdtsc (the sector is assembled for the 8086)
        mov [tsc0], eax
        mov [tsc0 + 4], edx
        mov bx, [46Ch]
        add bx, 18
sleep:  hlt
        cmp [46Ch], bx
        jb sleep
        db 0Fh, 31h             ; rdtsc (the sector is assembled for the 8086)
        sub eax, [tsc0]
        sbb edx, [tsc0 + 4]
        HEX16 dx
        shr eax, 16
        HEX16 ax
        PRINT " DONE"
        hlt
tsc0:   dd 0, 0
"""
    machine, out = run_sector(tmp_path, body, timeout=20)
    delta = int(out.split()[0], 16) << 16
    ticks = 18 * 65536 / 1193182          # 18 PIT ticks, 0.9887 s
    assert machine.tsc.read() > 0
    assert abs(delta / 1e9 - ticks) < 0.05, f"TSC delta {delta / 1e9:.4f} s for {ticks:.4f} s of PIT ticks"


def test_cpuid_states_the_rate_the_tsc_runs_at(tmp_path):
    # Leaf 15h (TSC = crystal Hz x EBX / EAX), as Linux reads it before it would measure the TSC against the
    # PIT: the stated rate must be the one the counter shows over 18 PIT ticks.
    body = r"""
        cpu 586
        xor ax, ax
        mov ds, ax
        xor eax, eax
        cpuid
        HEX16 ax                ; the highest basic leaf
        mov eax, 15h
        cpuid
        PUTC ' '
        HEX16 ax                ; denominator
        PUTC ' '
        HEX16 bx                ; numerator
        PUTC ' '
        mov eax, ecx
        shr eax, 16
        HEX16 ax                ; crystal Hz
        HEX16 cx
        sti
        mov bx, [46Ch]
edge:   hlt
        cmp [46Ch], bx
        je edge
        rdtsc
        mov [tsc0], eax
        mov bx, [46Ch]
        add bx, 18
sleep:  hlt
        cmp [46Ch], bx
        jb sleep
        rdtsc
        sub eax, [tsc0]
        PUTC ' '
        mov ecx, eax
        shr eax, 16
        HEX16 ax
        HEX16 cx
        PRINT " DONE"
        hlt
tsc0:   dd 0
"""
    _, out = run_sector(tmp_path, body, timeout=20)
    top, denominator, numerator, crystal, delta = (int(word, 16) for word in out.split()[:5])
    assert top >= 0x15, out
    assert denominator and numerator and crystal, out
    stated = crystal * numerator / denominator
    seconds = 18 * 65536 / 1193182
    assert abs(delta / stated - seconds) < 0.05, f"{delta} TSC counts in {seconds:.4f} s at a stated {stated} Hz"


def test_a_stale_code_segment_after_leaving_protected_mode_is_not_a_runaway(tmp_path):
    # Between clearing CR0.PE and the far jump that reloads CS, the CPU fetches through CS's hidden base
    # (here 0), not selector*16 (800h*16 = 8000h, zeroed memory). A slice stopped there must not be taken
    # for a jump into nowhere: iPXE's prot_to_real crashed "executing zeroed memory" when a stop landed so.
    body = r"""
        cpu 386
        cli
        xor ax, ax
        mov ds, ax
        mov word [1800h], 0FFFFh    ; GDT entry 100h (selector 800h): 16-bit code, base 0, limit 64 KiB
        mov byte [1805h], 9Ah
        lgdt [gdtr]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp 800h:pm
pm:     mov eax, cr0
        and al, 0FEh
        mov cr0, eax
        mov ecx, 60000000           ; real mode, CS still 800h: spin through several slices
spin:   dec ecx
        jnz spin
        jmp 0:back
back:   PRINT "DONE"
        hlt
gdtr:   dw 807h
        dd 1000h
"""
    machine, out = run_sector(tmp_path, body, timeout=60)
    assert out == "DONE"
    assert machine.slices > 2, "the spin did not span a slice boundary: the test proves nothing"


def test_no_irq_comes_between_sti_and_the_next_instruction(tmp_path):
    # `sti; sysexit` and `mov ss, ax; mov sp, ...` rely on the one-instruction interrupt shadow. QEMU ends a
    # translation block at `sti`, so a slice can stop right inside the shadow with IRQ0 due: the IRQ must
    # wait for the next instruction. The handler counts the times it found the shadowed store not done.
    body = r"""
        cpu 386
        cli
        xor ax, ax
        mov ds, ax
        mov word [8 * 4], irq0
        mov word [8 * 4 + 2], 0
spin:   cli
        mov byte [flag], 0
        sti
        mov byte [flag], 1
        cli
        cmp word [ticks], 20
        jb spin
        HEX16 [bad]
        PRINT " DONE"
        hlt
irq0:   cmp byte [cs:flag], 0
        jne .counted
        inc word [cs:bad]
.counted:
        inc word [cs:ticks]
        push ax
        mov al, 20h
        out 20h, al
        pop ax
        iret
flag:   db 0
ticks:  dw 0
bad:    dw 0
"""
    machine, out = run_sector(tmp_path, body, timeout=60)
    assert out == "0000 DONE", f"IRQ0 came inside the interrupt shadow ({out.split()[0]} of 20 ticks)"
