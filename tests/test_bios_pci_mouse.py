"""The PCI BIOS (int 1Ah B1xxh), the pointing-device BIOS (int 15h C2xxh) with IRQ12, and the
8254's modes as a guest's IRQ0 handler sees them."""

from __future__ import annotations

import time

from nbdboot.debug.sectors import assemble, run_sector
from nbdboot.disk.file import FileDevice
from nbdboot.pc import PC


def test_pci_bios_installation_find_and_config_access(tmp_path):
    body = r"""
        mov ax, 0B101h
        xor edi, edi
        int 1Ah
        jc fail
        cmp edx, 20494350h          ; "PCI "
        jne fail
        HEX16 ax
        PUTC ' '
        HEX16 bx
        PUTC ' '
        mov ax, 0B102h              ; find the PIIX3 ISA bridge
        mov cx, 7000h
        mov dx, 8086h
        xor si, si
        int 1Ah
        jc fail
        HEX16 bx                    ; bus 0, device 1, function 0: 0008h
        PUTC ' '
        mov ax, 0B103h              ; find class 060000h: the host bridge
        mov ecx, 060000h
        xor si, si
        int 1Ah
        jc fail
        HEX16 bx
        PUTC ' '
        mov ax, 0B10Ah              ; dword 0 of 00:00.0
        xor bx, bx
        xor di, di
        int 1Ah
        jc fail
        shr ecx, 16
        HEX16 cx
        PUTC ' '
        mov ax, 0B10Bh              ; write the interrupt line register of the ISA bridge
        mov bx, 0008h
        mov di, 3Ch
        mov cl, 0Bh
        int 1Ah
        jc fail
        mov ax, 0B108h
        mov bx, 0008h
        mov di, 3Ch
        xor cx, cx
        int 1Ah
        HEX16 cx
        PUTC ' '
        mov ax, 0B102h              ; no such device: CF=1 AH=86h
        mov cx, 1234h
        mov dx, 8086h
        xor si, si
        int 1Ah
        jnc fail
        HEX16 ax
        PUTC ' '
        mov dx, 0CF8h               ; mechanism #1 directly: 00:01.0 dword 8 (class, revision)
        mov eax, 80000808h
        out dx, eax
        mov dx, 0CFCh
        in eax, dx
        shr eax, 16
        HEX16 ax
        PRINT " DONE"
        sti
        hlt
fail:   PRINT "FAIL DONE"
        sti
        hlt
"""
    _, out = run_sector(tmp_path, body)
    assert out == "0001 0210 0008 0000 1237 000B 8602 0601 DONE", out


def test_pit_mode0_interrupts_once_mode2_periodically(tmp_path):
    # The guest's IRQ0 handler counts; int 15h 86h waits 200 ms with interrupts on.
    body = r"""
        cli
        xor ax, ax
        mov ds, ax
        mov word [8 * 4], irq0
        mov [8 * 4 + 2], cs
        mov al, 30h                 ; counter 0, lo/hi, mode 0 (one-shot)
        out 43h, al
        mov al, 0
        out 40h, al
        mov al, 20h                 ; 2000h: 6.9 ms
        out 40h, al
        call wait200
        HEX16 [count]
        PUTC ' '
        mov word [count], 0
        cli
        mov al, 34h                 ; mode 2 (rate generator), the same count
        out 43h, al
        mov al, 0
        out 40h, al
        mov al, 20h
        out 40h, al
        call wait200
        HEX16 [count]
        PRINT " DONE"
        sti
        hlt
wait200:
        mov ah, 86h
        mov cx, 3
        mov dx, 0D40h               ; 200000 us
        int 15h
        ret
irq0:   inc word [cs:count]
        push ax
        mov al, 20h
        out 20h, al
        pop ax
        iret
count:  dw 0
"""
    _, out = run_sector(tmp_path, body)
    once, periodic = (int(x, 16) for x in out.split()[:2])
    assert once == 1, out
    assert 26 <= periodic <= 31, out  # 200 ms / 6.87 ms = 29


def test_mouse_through_int15_c2_and_irq12(tmp_path):
    body = r"""
        xor ax, ax
        mov ds, ax
        mov ax, 0C205h              ; initialize, 3-byte packets (it forgets a handler set before)
        mov bh, 3
        int 15h
        jc fail
        push cs
        pop es
        mov bx, handler
        mov ax, 0C207h              ; set the handler
        int 15h
        jc fail
        mov ax, 0C200h              ; enable
        mov bh, 1
        int 15h
        jc fail
        PRINT "READY"
        sti
idle:   hlt
        cmp word [cs:calls], 0
        je idle
        HEX16 [cs:status]
        PUTC ' '
        HEX16 [cs:xy]
        PRINT " DONE"
        hlt
fail:   PRINT "FAIL DONE"
        hlt
handler:                            ; far call: [sp+4]=Z [sp+6]=Y [sp+8]=X [sp+10]=status
        push bp
        mov bp, sp
        mov ax, [bp + 12]
        mov [cs:status], ax
        mov al, [bp + 10]
        mov ah, [bp + 8]
        mov [cs:xy], ax
        inc word [cs:calls]
        pop bp
        retf
calls:  dw 0
status: dw 0
xy:     dw 0
"""
    image = assemble(tmp_path, body)
    disk = tmp_path / "disk.img"
    disk.write_bytes(image + bytes(1440 * 1024 - len(image)))
    machine = PC(memory_mb=16)
    machine.bios.disk.add_drive(0, FileDevice(disk))
    machine.power_on(0)
    deadline = time.monotonic() + 10
    moved = False
    while b"DONE" not in machine.debugcon.output:
        assert time.monotonic() < deadline, machine.debugcon.output
        if not moved and b"READY" in machine.debugcon.output:
            machine.mouse.move(7, -2, 2)   # right button, 7 right, 2 down
            moved = True
        machine.run_slice()
    out = machine.debugcon.output.decode()
    assert out == "READY002A FE07 DONE", out  # status: sync bit, right button, Y negative; Y=-2, X=7
    assert machine.irq_count[12] == 3
