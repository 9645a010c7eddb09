"""The chipset as POST leaves it, under QEMU+SeaBIOS and under nbdboot: the 8042 command byte, the PCI
BIOS installation check and the ISA bridge's address, the APM installation check, RTC registers A/B,
port 92h and the PIC's masks. (APM's CX differs on purpose: SeaBIOS offers the 16/32-bit protected-mode interfaces, nbdboot
the real-mode one only.)"""

from __future__ import annotations

from nbdboot.debug.sectors import assemble, run_sector
from support import qemuref

BODY = r"""
        cli
        mov al, 20h
        out 64h, al
.w:     in al, 64h
        test al, 1
        jz .w
        in al, 60h
        xor ah, ah
        HEX16 ax
        PUTC ' '
        mov ax, 0B101h
        xor edi, edi
        int 1Ah
        HEX16 ax
        PUTC ' '
        HEX16 bx
        PUTC ' '
        HEX16 cx
        PUTC ' '
        mov ax, 0B102h
        mov cx, 7000h
        mov dx, 8086h
        xor si, si
        int 1Ah
        HEX16 bx
        PUTC ' '
        mov ax, 5300h
        xor bx, bx
        int 15h
        pushf
        HEX16 ax
        PUTC ' '
        HEX16 bx
        PUTC ' '
        HEX16 cx
        PUTC ' '
        pop ax
        and ax, 1
        HEX16 ax
        PUTC ' '
        mov al, 0Ah
        out 70h, al
        in al, 71h
        and al, 7Fh
        mov ah, al
        mov al, 0Bh
        out 70h, al
        in al, 71h
        HEX16 ax
        PUTC ' '
        in al, 92h
        xor ah, ah
        HEX16 ax
        PUTC ' '
        in al, 21h                  ; the PIC masks: lines without a BIOS user stay masked
        mov ah, al
        in al, 0A1h
        HEX16 ax
        PRINT " DONE"
        sti
        hlt
"""


def test_post_state_matches_qemu(tmp_path):
    image = assemble(tmp_path, BODY)
    disk = tmp_path / "floppy.img"
    disk.write_bytes(image + bytes(1440 * 1024 - len(image)))
    reference = qemuref.boot(str(disk), None, media="floppy", expect_debug="DONE", timeout=30)
    assert reference.matched, reference.debug
    _, ours = run_sector(tmp_path, BODY)
    theirs = reference.debug.strip().split()
    mine = ours.split()
    assert theirs[7] == "0003" and mine[7] == "0000"   # APM CX: protected-mode interfaces
    del theirs[7], mine[7]
    assert mine == theirs


# The 8042's own output reaches the buffer whatever the interface disable bits say (Linux's i8042 driver finds
# its AUX port this way: D3h loopback with the port disabled, then IRQ12 with it enabled).
CONTROLLER_OUTPUT = r"""
        cli
        mov al, 0ADh                ; keyboard interface off: a command reply still comes
        out 64h, al
        call drain
        mov al, 20h
        out 64h, al
        call show
        mov al, 0AEh
        out 64h, al
        mov al, 0A7h                ; aux interface off: D3h still puts its byte in the buffer, as from aux
        out 64h, al
        mov al, 0D3h
        out 64h, al
        mov al, 5Ah
        out 60h, al
        call show
        mov al, 0D2h                ; and D2h as from the keyboard
        out 64h, al
        mov al, 0A5h
        out 60h, al
        call show
        mov al, 0A8h
        out 64h, al
        PRINT "DONE"
        hlt
drain:  in al, 64h                  ; whatever the BIOS left
        test al, 1
        jz .done
        in al, 60h
        jmp drain
.done:  ret
show:   mov cx, 1000h               ; status (buffer full, from aux) and the byte
.wait:  in al, 64h
        test al, 1
        jnz .full
        loop .wait
.full:  and al, 21h
        mov ah, al
        in al, 60h
        HEX16 ax
        PUTC ' '
        ret
"""


def test_controller_output_passes_the_disable_bits_as_qemu(tmp_path):
    image = assemble(tmp_path, CONTROLLER_OUTPUT)
    disk = tmp_path / "floppy.img"
    disk.write_bytes(image + bytes(1440 * 1024 - len(image)))
    reference = qemuref.boot(str(disk), None, media="floppy", expect_debug="DONE", timeout=30)
    assert reference.matched, reference.debug
    _, ours = run_sector(tmp_path, CONTROLLER_OUTPUT)
    assert ours == reference.debug.strip()
    assert ours.split()[1:3] == ["215A", "01A5"], ours
