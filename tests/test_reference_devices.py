"""The chipset as POST leaves it, under QEMU+SeaBIOS and under nbdboot: the 8042 command byte, the PCI
BIOS installation check and the ISA bridge's address, the APM installation check, RTC registers A/B,
port 92h and the PIC's masks. (APM's CX differs on purpose: SeaBIOS offers the 16/32-bit protected-mode interfaces, nbdboot
the real-mode one only.)"""

from __future__ import annotations

import qemuref
from nbdboot.debug.sectors import assemble, run_sector

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
