"""The 16550A UART against QEMU's: one NASM program drives COM1's registers in loopback (divisor latch,
FIFO, LSR/MSR and their deltas, overrun, interrupt identification, IRQ4 through the PIC) and int 14h,
another the FIFO's character timeout, and both report every read-back on port E9h; nbdboot must report
exactly what QEMU does."""

from __future__ import annotations

from nbdboot.debug.sectors import assemble, run_sector
from support import qemuref
from support.servers import require_tool

LOADER = r"""
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ax, 0204h
        mov cx, 0002h
        xor dh, dh
        mov bx, 7E00h
        int 13h
        jmp stage2
"""

PROGRAM = r"""
stage2:
%macro IN8 1
        mov dx, 3F8h + %1
        in al, dx
        xor ah, ah
        HEX16 ax
        PUTC ' '
%endmacro
%macro OUT8 2
        mov dx, 3F8h + %1
        mov al, %2
        out dx, al
%endmacro
        cli
        xor ax, ax
        mov ds, ax
        mov word [0Ch * 4], irq4
        mov word [0Ch * 4 + 2], 0
        OUT8 1, 0               ; no interrupts
        OUT8 4, 1Fh             ; loopback, OUT2, OUT1, RTS, DTR
        IN8 6
        IN8 6
        OUT8 3, 80h             ; divisor latch: FFFFh, so slow (1.8 baud) that the character timeout
        OUT8 0, 0FFh            ; never fires during this part (test_character_timeout_matches_qemu times it)
        OUT8 1, 0FFh
        IN8 0
        IN8 1
        OUT8 3, 03h
        IN8 3
        OUT8 2, 07h             ; FIFO on and cleared
        IN8 2
        OUT8 0, 'A'
        OUT8 0, 'B'
        OUT8 0, 'C'
        IN8 5
        IN8 2
        OUT8 1, 01h             ; received-data interrupt
        IN8 2
        IN8 0
        IN8 0
        IN8 0
        IN8 5
        IN8 2
        OUT8 1, 02h             ; THR-empty interrupt: pending at once, cleared by reading IIR
        IN8 2
        IN8 2
        OUT8 1, 0
        mov cx, 17              ; one more than the FIFO holds
.fill:  OUT8 0, 'x'
        loop .fill
        IN8 5
        IN8 5
        OUT8 2, 07h
        IN8 5
        OUT8 4, 10h             ; loopback with every modem output off: deltas in MSR
        IN8 6
        IN8 6
        OUT8 7, 5Ah
        IN8 7
        OUT8 4, 18h             ; OUT2 lets the UART's interrupt reach IRQ4
        in al, 21h              ; unmask IRQ4 (SeaBIOS masks the lines it does not use)
        and al, 0EFh
        out 21h, al
        mov byte [count], 0
        OUT8 1, 02h             ; THR empty: an interrupt at once...
        sti
        hlt
        cli
        OUT8 0, 'y'             ; ...and again after a byte goes out
        sti
        hlt
        cli
        mov al, [count]
        xor ah, ah
        HEX16 ax
        PUTC ' '
        OUT8 1, 0
        OUT8 4, 0               ; int 14h: initialise COM1 (9600 8N1), status
        mov ax, 00E3h
        xor dx, dx
        int 14h
        HEX16 ax
        PUTC ' '
        mov ah, 03h
        xor dx, dx
        int 14h
        HEX16 ax
        PUTC ' '
        mov dx, 3F8h + 3        ; the divisor int 14h set
        mov al, 83h
        out dx, al
        IN8 0
        IN8 1
        OUT8 3, 03h
        PRINT "DONE"
.halt:  hlt
        jmp .halt
irq4:   push ax
        push dx
        mov dx, 3FAh
        in al, dx
        inc byte [cs:count]
        mov al, 20h
        out 20h, al
        pop dx
        pop ax
        iret
count:  db 0
        times 2048 - ($ - $$) db 0
"""


def test_uart_registers_match_qemu(tmp_path, nbdkit):
    require_tool("qemu-system-i386")
    _, ours = run_sector(tmp_path, LOADER, extra=PROGRAM)
    image = assemble(tmp_path, LOADER, PROGRAM)
    disk = tmp_path / "qemu.img"
    disk.write_bytes(image + bytes(1440 * 1024 - len(image)))
    server = nbdkit("file", str(disk))
    result = qemuref.boot(server.uri, media="floppy", expect_debug="DONE", serial="null", timeout=60)
    assert result.matched, result.debug
    assert ours == result.debug


# At 9600 baud 8N1 a character takes 1.04 ms: the timeout comes 4.2 ms after the last byte in or out of
# the FIFO. WAIT_IIR polls IIR until it is no longer AL (at most about 3 timer ticks) and prints it.
TIMEOUT_PROGRAM = r"""
stage2:
%macro IN8 1
        mov dx, 3F8h + %1
        in al, dx
        xor ah, ah
        HEX16 ax
        PUTC ' '
%endmacro
%macro OUT8 2
        mov dx, 3F8h + %1
        mov al, %2
        out dx, al
%endmacro
%macro WAIT_IIR 1
        mov bl, %1
        call wait_iir
%endmacro
        cli
        xor ax, ax
        mov ds, ax
        mov word [0Ch * 4], irq4
        mov word [0Ch * 4 + 2], 0
        OUT8 1, 0
        OUT8 4, 1Bh             ; loopback, OUT2, RTS, DTR
        OUT8 3, 80h
        OUT8 0, 12              ; 9600 baud
        OUT8 1, 0
        OUT8 3, 03h
        OUT8 2, 87h             ; FIFO on and cleared, trigger level 8
        OUT8 1, 01h             ; received-data interrupts (IRQ4 masked at the PIC for now)
        OUT8 0, 'A'
        OUT8 0, 'B'
        OUT8 0, 'C'
        IN8 2                   ; below the trigger level, no timeout yet: C1
        WAIT_IIR 0C1h           ; then the character timeout: CC
        IN8 0                   ; reading a byte clears it...
        IN8 2
        WAIT_IIR 0C1h           ; ...and it comes again 4 characters later, with data left
        OUT8 1, 0               ; masked with the data interrupt
        IN8 2
        OUT8 1, 01h
        in al, 21h              ; IRQ4 on: the handler reads IIR and one byte
        and al, 0EFh
        out 21h, al
        mov byte [count], 0
        sti
.irqs:  hlt
        cmp byte [count], 2
        jb .irqs
        cli
        mov al, [iirs]
        xor ah, ah
        HEX16 ax
        PUTC ' '
        mov al, [iirs + 1]
        HEX16 ax
        PUTC ' '
        in al, 21h
        or al, 10h
        out 21h, al
        IN8 2                   ; empty: no interrupt
        OUT8 2, 87h
        mov cx, 8               ; at the trigger level: the data interrupt at once...
.fill:  OUT8 0, 'x'
        loop .fill
        IN8 2
        WAIT_IIR 0C4h           ; ...and the timeout ahead of it later
        OUT8 2, 87h             ; clearing the FIFO clears the timeout
        IN8 2
        OUT8 2, 00h             ; FIFO off: no timeout at all
        OUT8 0, 'Z'
        IN8 2
        WAIT_IIR 04h
        IN8 0
        PRINT "DONE"
        cli
        hlt
wait_iir:
        sti                     ; the BIOS's IRQ0 counts ticks; IRQ4 is masked
        mov si, [046Ch]
.poll:  mov dx, 3FAh
        in al, dx
        cmp al, bl
        jne .done
        mov ax, [046Ch]
        sub ax, si
        cmp ax, 3
        jb .poll
        in al, dx
.done:  cli
        xor ah, ah
        HEX16 ax
        PUTC ' '
        ret
irq4:   push ax
        push bx
        push dx
        mov dx, 3FAh
        in al, dx
        movzx bx, byte [cs:count]
        mov [cs:iirs + bx], al
        mov dx, 3F8h
        in al, dx
        inc byte [cs:count]
        mov al, 20h
        out 20h, al
        pop dx
        pop bx
        pop ax
        iret
count:  db 0
iirs:   db 0, 0
        times 2048 - ($ - $$) db 0
"""


def test_character_timeout_matches_qemu(tmp_path):
    require_tool("qemu-system-i386")
    _, ours = run_sector(tmp_path, LOADER, extra=TIMEOUT_PROGRAM)
    image = assemble(tmp_path, LOADER, TIMEOUT_PROGRAM)
    disk = tmp_path / "qemu.img"
    disk.write_bytes(image + bytes(1440 * 1024 - len(image)))
    result = qemuref.boot(str(disk), media="floppy", expect_debug="DONE", serial="null", timeout=60)
    assert result.matched, result.debug
    assert ours == result.debug
    iir = ours.split()
    assert iir[:4] == ["00C1", "00CC", "0041", "00C1"] and iir[4] == "00CC", ours   # the timeout, timed
