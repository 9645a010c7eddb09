"""BIOS contracts checked by NASM boot sectors running on the machine (port E9h reports)."""

from __future__ import annotations

import pytest

from nbdboot.console.keys import parse_keys
from nbdboot.machine.machine import GuestCrash
from nbdboot.debug.sectors import run_sector


def test_boot_registers_and_int13_floppy_chs_read(tmp_path):
    # DL = boot drive; int 13h 02h reads sector 2 (marked "S2") to 0:8000; CF clear, AH 0.
    body = r"""
        HEX16 dx
        PUTC ' '
        mov ax, 0201h
        mov cx, 0002h
        xor dh, dh
        mov bx, 8000h
        stc
        int 13h
        jc fail
        HEX16 ax
        PUTC ' '
        mov ax, [8000h]
        HEX16 ax
        PRINT " DONE"
        hlt
fail:   PRINT "FAIL DONE"
        hlt
"""
    extra = "db 'S2'\ntimes 1024 - ($ - $$) db 0\n"
    _, out = run_sector(tmp_path, body, extra=extra)
    assert out == "0000 0001 3253 DONE"  # DL=00; AH=00 AL=01; "S2" little-endian


def test_int13_flags_returned_in_frame_and_unknown_function(tmp_path):
    # 41h on a hard disk: CF=0, BX=AA55h, AH=30h. AH=50h (no such function): CF=1, AH=01h.
    # A read past the last cylinder fails with CF=1 and the status is in 40:74.
    body = r"""
        mov ah, 41h
        mov bx, 55AAh
        mov dl, 80h
        stc
        int 13h
        jc fail
        HEX16 bx
        PUTC ' '
        HEX16 ax
        PUTC ' '
        mov ah, 50h
        mov dl, 80h
        clc
        int 13h
        jnc fail
        HEX16 ax
        PUTC ' '
        mov ah, 08h
        mov dl, 80h
        int 13h
        jc fail
        HEX16 cx
        PUTC ' '
        HEX16 dx
        PRINT " DONE"
        hlt
fail:   PRINT "FAIL DONE"
        hlt
"""
    _, out = run_sector(tmp_path, body, drive=0x80, disk_size=16 * 1024 * 1024)
    heads, spt = 255, 63
    cyl = 16 * 1024 * 1024 // 512 // (heads * spt)  # 2
    cx = ((cyl - 1) & 0xFF) << 8 | (((cyl - 1) >> 2) & 0xC0) | spt
    assert out == f"AA55 30{out[7:9]} 01{out[12:14]} {cx:04X} {heads - 1:02X}01 DONE"


def test_guest_int13_hook_chains_to_bios(tmp_path):
    # DOS/MEMDISK style: a guest handler counts calls and chains with pushf + far call.
    body = r"""
        xor ax, ax
        mov ds, ax
        mov ax, [13h*4]
        mov [old], ax
        mov ax, [13h*4+2]
        mov [old+2], ax
        cli
        mov word [13h*4], hook
        mov word [13h*4+2], 0
        sti
        mov ax, 0201h
        mov cx, 0001h
        xor dh, dh
        mov bx, 8000h
        int 13h
        jc fail
        HEX16 [count]
        PUTC ' '
        HEX16 [8000h + 510]
        PRINT " DONE"
        hlt
fail:   PRINT "FAIL DONE"
        hlt
hook:   inc word [cs:count]
        pushf
        call far [cs:old]
        retf 2
old:    dd 0
count:  dw 0
"""
    _, out = run_sector(tmp_path, body)
    assert out == "0001 AA55 DONE"


def test_timer_ticks_drive_int1c_and_bda(tmp_path):
    # Hook int 1Ch, idle with sti/hlt for 5 ticks: the hook and 40:6C both advance.
    body = r"""
        xor ax, ax
        mov ds, ax
        cli
        mov word [1Ch*4], tick
        mov word [1Ch*4+2], 0
        sti
        mov ax, [46Ch]
        mov [start_ticks], ax
idle:   hlt
        cmp word [count], 5
        jb idle
        mov ax, [46Ch]
        sub ax, [start_ticks]
        HEX16 [count]
        PUTC ' '
        cmp ax, 5
        jb fail
        PRINT "OK DONE"
        hlt
fail:   PRINT "FAIL DONE"
        hlt
tick:   inc word [cs:count]
        iret
count:  dw 0
start_ticks: dw 0
"""
    machine, out = run_sector(tmp_path, body)
    assert out == "0005 OK DONE"
    assert machine.irq_count[0] >= 5


def test_int15_e820_map_and_a20(tmp_path):
    body = r"""
        xor ebx, ebx
        xor ax, ax
        mov es, ax
next:   mov eax, 0E820h
        mov edx, 534D4150h
        mov ecx, 20
        mov di, 9000h
        int 15h
        jc fail
        mov ax, [9000h + 16]
        HEX16 ax
        PUTC ','
        test ebx, ebx
        jnz next
        mov ax, 2402h
        int 15h
        jc fail
        HEX16 ax
        PRINT " DONE"
        hlt
fail:   PRINT "FAIL DONE"
        hlt
"""
    _, out = run_sector(tmp_path, body)
    assert out == "0001,0002,0002,0001,0001 DONE"


def test_int16_blocking_read_gets_scripted_key_via_irq1(tmp_path):
    # The scripted keys wait until the guest blocks in int 16h 00h, then come through IRQ1.
    body = r"""
        xor ax, ax
        int 16h
        HEX16 ax
        PUTC ' '
        mov ah, 10h
        int 16h
        HEX16 ax
        mov ah, 01h
        int 16h
        jnz fail
        PRINT " DONE"
        hlt
fail:   PRINT "FAIL DONE"
        hlt
"""
    machine, out = run_sector(tmp_path, body, keys=parse_keys("a{enter}"))
    assert out == "1E61 1C0D DONE"  # and the ring is empty afterwards (ZF=1)
    assert machine.irq_count[1] == 4  # a make and a break code per key


def test_int10_teletype_writes_video_memory(tmp_path):
    body = r"""
        mov ax, 0E48h
        int 10h
        mov al, 'i'
        int 10h
        mov ah, 03h
        xor bh, bh
        int 10h
        HEX16 dx
        PUTC ' '
        push 0B800h
        pop es
        HEX16 [es:0]
        PRINT " DONE"
        hlt
"""
    machine, out = run_sector(tmp_path, body)
    assert out == "0002 0748 DONE"


def test_mbr_relocation_then_load_over_executed_code(tmp_path):
    # The MBR pattern that breaks on stale translated code: copy to 0:0600, jump there,
    # load sector 2 over 0:7C00 (where code already ran) and jump to it.
    body = r"""
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov si, 7C00h
        mov di, 0600h
        mov cx, 256
        rep movsw
        jmp 0:(relocated - 7C00h + 0600h)
relocated:
        mov ax, 0201h
        mov cx, 0002h
        xor dh, dh
        mov bx, 7C00h
        int 13h
        jc fail2 - 7C00h + 0600h
        jmp 0:7C00h
fail2:  mov al, 'F'
        out 0E9h, al
        hlt
"""
    extra = r"""
        ; sector 2, runs at 0:7C00
        mov al, 'O'
        out 0E9h, al
        mov al, 'K'
        out 0E9h, al
        mov si, done_msg - 200h
        mov cx, 5
.p:     lodsb
        out 0E9h, al
        loop .p
        hlt
done_msg: db " DONE"
        times 1024 - ($ - $$) db 0
"""
    _, out = run_sector(tmp_path, body, extra=extra)
    assert out.endswith("OK DONE")


def test_unhandled_invalid_opcode_is_a_crash_with_report(tmp_path):
    body = r"""
        PRINT "DONE"
        ud2
"""
    with pytest.raises(GuestCrash) as info:
        run_sector(tmp_path, body, until="never")
    assert "invalid opcode" in str(info.value)
    assert "ud2" in info.value.report and "CS:IP" in info.value.report


def test_cli_hlt_is_a_crash(tmp_path):
    body = r"""
        cli
        hlt
        jmp start
"""
    with pytest.raises(GuestCrash) as info:
        run_sector(tmp_path, body, until="never")
    assert "halted with interrupts off" in str(info.value)


def test_timer_irq_reaches_protected_mode_guest_through_idt(tmp_path):
    # SYSLINUX-style: 32-bit PM with interrupts on, idling with sti; hlt. IRQ0 must
    # arrive through the guest's IDT (vector 08h, PIC not reprogrammed).
    body = r"""
        cli
        xor ax, ax
        mov ds, ax
        lgdt [gdt_desc]
        lidt [idt_desc]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp 08h:pm32
        bits 32
pm32:   mov ax, 10h
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, 7000h
        mov eax, irq0
        mov [idt + 8 * 8], ax
        shr eax, 16
        mov [idt + 8 * 8 + 6], ax
        sti
.idle:  hlt
        cmp dword [count], 3
        jb .idle
        mov al, 'P'
        out 0E9h, al
        mov al, 'M'
        out 0E9h, al
        mov al, '0'
        add al, [count]
        out 0E9h, al
        mov esi, done_msg
        mov ecx, 5
.p:     lodsb
        out 0E9h, al
        loop .p
.end:   hlt
        jmp .end
irq0:   inc dword [count]
        push eax
        mov al, 20h
        out 20h, al
        pop eax
        iret
count:  dd 0
done_msg: db " DONE"
        align 8
gdt:    dq 0
        dq 00CF9A000000FFFFh
        dq 00CF92000000FFFFh
gdt_desc: dw 23
        dd gdt
idt:    times 9 dq 00008E0000080000h   ; 32-bit interrupt gates, selector 08h, offset patched
idt_desc: dw 9 * 8 - 1
        dd idt
        bits 16
"""
    machine, out = run_sector(tmp_path, body)
    assert out.endswith("PM3 DONE")
    assert machine.cpu.protected


def test_fetch_from_unmapped_memory_is_a_crash(tmp_path):
    # 32-bit PM jump far beyond RAM (16 MiB machine): Unicorn stops, the run ends with a report.
    body = r"""
        PRINT "DONE"
        cli
        xor ax, ax
        mov ds, ax
        lgdt [gdt_desc]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp 08h:pm32
        bits 32
pm32:   mov eax, 80000000h
        jmp eax
        align 8
gdt:    dq 0
        dq 00CF9A000000FFFFh
gdt_desc: dw 15
        dd gdt
        bits 16
"""
    with pytest.raises(GuestCrash) as info:
        run_sector(tmp_path, body, until="never")
    assert "CPU stopped: instruction fetch from unmapped memory" in str(info.value)
    assert "protected mode" in info.value.report


def test_timer_reaches_a_guest_spinning_without_interrupts(tmp_path):
    # A delay loop that only reads 40:6C (no int, no port I/O, no hlt): no hook ends the
    # slice, so the watchdog must, and IRQ0 must still advance the tick count.
    body = r"""
        xor ax, ax
        mov ds, ax
        sti
        mov ax, [46Ch]
        add ax, 3
spin:   cmp [46Ch], ax
        jne spin
        PRINT "DONE"
        hlt
"""
    machine, out = run_sector(tmp_path, body)
    assert out == "DONE"
    assert machine.irq_count[0] >= 3


def test_protected_mode_fault_goes_to_guest_idt_with_error_code_slot(tmp_path):
    # Loading a selector beyond the GDT raises #GP; the guest's IDT handler gets it,
    # with an error-code word on the stack above the return frame (EIP, CS, EFLAGS).
    body = r"""
        cli
        xor ax, ax
        mov ds, ax
        lgdt [gdt_desc]
        lidt [idt_desc]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp 08h:pm32
        bits 32
pm32:   mov ax, 10h
        mov ds, ax
        mov ss, ax
        mov esp, 7000h
        mov eax, gp_handler
        mov [idt + 13 * 8], ax
        shr eax, 16
        mov [idt + 13 * 8 + 6], ax
fault:  mov ax, 50h
        mov ds, ax
        hlt
gp_handler:
        add esp, 4                 ; the error code
        cmp dword [esp], fault + 4 ; EIP of the faulting mov ds
        jne .bad
        cmp word [esp + 4], 08h    ; CS
        jne .bad
        mov al, 'G'
        jmp .out
.bad:   mov al, 'X'
.out:   out 0E9h, al
        mov esi, done_msg
        mov ecx, 5
.p:     lodsb
        out 0E9h, al
        loop .p
.end:   hlt
        jmp .end
done_msg: db " DONE"
        align 8
gdt:    dq 0
        dq 00CF9A000000FFFFh
        dq 00CF92000000FFFFh
gdt_desc: dw 23
        dd gdt
idt:    times 14 dq 00008E0000080000h
idt_desc: dw 14 * 8 - 1
        dd idt
        bits 16
"""
    _, out = run_sector(tmp_path, body)
    assert out == "G DONE"
