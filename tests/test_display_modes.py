"""Every video mode against QEMU: the same NASM program draws in nbdboot and in QEMU+SeaBIOS
(served by a real nbdkit), and nbdboot's render must equal QEMU's `screendump` pixel for pixel.

Each program sets its mode, draws through the BIOS and through the VGA's own registers (map mask,
write modes, set/reset, logical operations, bit mask, latches, DAC, attribute palette), reports
register read-backs on port E9h (compared too), then writes DONE.
"""

from __future__ import annotations

import pytest

from nbdboot.console.render import png, render
from nbdboot.debug.sectors import assemble
from nbdboot.disk.file import FileDevice
from nbdboot.machine.machine import Machine
from nbdboot.pc import PC

from support import qemuref
from support.servers import require_tool

# Stage 1 loads 16 more sectors at 0:7E00 (the program), so programs are not held to 446 bytes.
LOADER = r"""
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ax, 0210h
        mov cx, 0002h
        xor dh, dh
        mov bx, 7E00h
        int 13h
        jmp stage2
"""
FINISH = r"""
finish: PRINT "DONE"
        sti
.idle:  hlt
        jmp .idle
"""

PROGRAMS = {
    "tables": r"""
stage2: mov ax, 0003h
        int 10h
        mov ah, 01h
        mov cx, 2000h
        int 10h
        mov ax, 1130h           ; 8x16 ROM font: CX points, DL rows - 1, the glyph of 'A'
        mov bh, 06h
        int 10h
        HEX16 cx
        mov al, dl
        xor ah, ah
        HEX16 ax
        mov si, 41h * 16
        mov cx, 8
.glyph: mov ax, [es:bp + si]
        HEX16 ax
        add si, 2
        loop .glyph
        PUTC ' '
        mov ax, 1130h           ; 8x8 ROM font, upper half (int 1Fh's): glyph 80h
        mov bh, 04h
        int 10h
        mov ax, [es:bp]
        HEX16 ax
        mov ax, [es:bp + 2]
        HEX16 ax
        PUTC ' '
        xor ax, ax
        mov es, ax
        mov ah, 1Bh             ; functionality/state: AL = 1Bh, mode, columns, rows, points
        xor bx, bx
        mov di, 8000h
        int 10h
        HEX16 ax
        mov ax, [di + 4]
        HEX16 ax
        mov ax, [di + 22h]
        HEX16 ax
        mov ax, [di + 23h]
        HEX16 ax
        PUTC ' '
        mov ax, 4F00h           ; VBE: signature, version, memory
        mov di, 8000h
        mov dword [di], 'VBE2'
        int 10h
        HEX16 ax
        mov ax, [di]
        HEX16 ax
        mov ax, [di + 2]
        HEX16 ax
        mov ax, [di + 4]
        HEX16 ax
        mov ax, 4F01h           ; mode 118h: 1024x768x24 (attributes, pitch, size, bpp, model, masks)
        mov cx, 0118h
        mov di, 8200h
        int 10h
        HEX16 ax
        mov ax, [di + 10h]
        HEX16 ax
        mov ax, [di + 12h]
        HEX16 ax
        mov ax, [di + 14h]
        HEX16 ax
        mov ax, [di + 19h]
        HEX16 ax
        mov ax, [di + 1Fh]
        HEX16 ax
        mov ax, [di + 21h]
        HEX16 ax
        mov ax, [di + 23h]
        HEX16 ax
        jmp finish
""",
    "text80": r"""
stage2: mov ax, 0003h
        int 10h
        mov ah, 01h
        mov cx, 2000h           ; no cursor: QEMU's blinks
        int 10h
        push 0B800h
        pop es
        xor di, di
        mov cx, 80*25
        xor ax, ax
.fill:  mov al, cl              ; every glyph but B0h-DFh (QEMU stretches B0h-BFh too), 128 attributes
        cmp al, 0B0h
        jb .ok
        cmp al, 0DFh
        ja .ok
        mov al, '#'
.ok:    mov ah, cl
        and ah, 7Fh
        stosw
        loop .fill
        mov dx, 3C8h            ; DAC entry 1 (blue) becomes orange
        mov al, 1
        out dx, al
        inc dx
        mov al, 3Fh
        out dx, al
        mov al, 20h
        out dx, al
        xor al, al
        out dx, al
        jmp finish
""",
    "text40": r"""
stage2: mov ax, 0001h
        int 10h
        mov ah, 01h
        mov cx, 2000h
        int 10h
        mov si, msg
.put:   lodsb
        test al, al
        jz finish
        mov ah, 0Eh
        mov bx, 0007h
        int 10h
        jmp .put
msg:    db "Forty columns", 13, 10, "of text", 0
""",
    "text80x50": r"""
stage2: mov ax, 0003h
        int 10h
        mov ax, 1112h           ; the 8x8 ROM font: 50 rows
        xor bl, bl
        int 10h
        mov ah, 01h
        mov cx, 2000h
        int 10h
        push 0B800h
        pop es
        xor di, di
        mov cx, 80*50
.fill:  mov al, cl
        and al, 7Fh
        or al, 20h
        mov ah, cl
        and ah, 3Fh
        or ah, 1
        stosw
        loop .fill
        push ds
        push 0
        pop ds
        mov al, [484h]
        pop ds
        mov ah, 0
        HEX16 ax
        jmp finish
""",
    "mode13": r"""
stage2: mov ax, 0013h
        int 10h
        push 0A000h
        pop es
        xor di, di
        xor dx, dx
.row:   xor cx, cx
.col:   mov ax, cx
        add ax, dx
        stosb
        inc cx
        cmp cx, 320
        jb .col
        inc dx
        cmp dx, 200
        jb .row
        mov dx, 3C8h            ; DAC 1 = orange, then read it back through 3C7h
        mov al, 1
        out dx, al
        inc dx
        mov al, 3Fh
        out dx, al
        mov al, 20h
        out dx, al
        xor al, al
        out dx, al
        mov dx, 3C7h
        mov al, 1
        out dx, al
        mov dx, 3C9h
        in al, dx
        mov ah, al
        in al, dx
        HEX16 ax
        mov ax, 0E41h           ; a character through the BIOS in colour 15
        mov bx, 000Fh
        int 10h
        mov ax, 0C04h           ; and a pixel
        mov cx, 300
        mov dx, 190
        int 10h
        mov ah, 0Dh
        int 10h
        HEX16 ax
        jmp finish
""",
    "mode12": r"""
stage2: mov ax, 0012h
        int 10h
        push 0A000h
        pop es
        mov dx, 3CEh
        mov ax, 0205h           ; write mode 2: the byte written is a colour
        out dx, ax
        xor di, di
        xor bx, bx
.row:   xor cx, cx
.col:   mov al, 8               ; bit mask varies with x ^ y
        mov ah, cl
        xor ah, bl
        out dx, ax
        mov al, [es:di]         ; load the latches
        mov al, cl
        add al, bl
        and al, 15
        stosb
        inc cx
        cmp cx, 80
        jb .col
        inc bx
        cmp bx, 480
        jb .row
        mov ax, 0005h           ; write mode 0 with set/reset colour 14 on every plane
        out dx, ax
        mov ax, 0FF08h
        out dx, ax
        mov ax, 0E00h
        out dx, ax
        mov ax, 0F01h
        out dx, ax
        mov di, 80*200+10
        mov cx, 20
        rep stosb
        mov ax, 0001h
        out dx, ax
        mov dx, 3C4h            ; map mask: plane 0 only, XOR with the latches, rotated by 3
        mov ax, 0102h
        out dx, ax
        mov dx, 3CEh
        mov ax, 1B03h
        out dx, ax
        mov di, 80*300
        mov cx, 80*10
.x:     mov al, [es:di]
        mov al, 0F0h
        stosb
        loop .x
        mov ax, 0003h
        out dx, ax
        mov dx, 3C4h
        mov ax, 0F02h
        out dx, ax
        mov dx, 3CEh            ; write mode 1: copy lines 0-9 to 400-409 through the latches
        mov ax, 0105h
        out dx, ax
        push ds
        push es
        pop ds
        xor si, si
        mov di, 80*400
        mov cx, 800
        rep movsb
        pop ds
        mov ax, 0005h
        out dx, ax
        mov ax, 0A02h           ; read mode 1: where is colour 10 in byte 0 of line 1?
        out dx, ax
        mov ax, 0F07h
        out dx, ax
        mov ax, 0805h
        out dx, ax
        mov al, [es:80]
        mov ah, 0
        HEX16 ax
        mov ax, 0005h
        out dx, ax
        mov ax, 0004h           ; read mode 0, map 2
        out dx, ax
        mov ax, 0204h
        out dx, ax
        mov al, [es:81]
        mov ah, 0
        HEX16 ax
        mov ax, 1000h           ; attribute palette: pixel value 1 shows DAC 3Ch
        mov bx, 3C01h
        int 10h
        mov ax, 0E42h
        mov bx, 000Ch
        int 10h
        jmp finish
""",
    "mode0d": r"""
stage2: mov ax, 000Dh
        int 10h
        mov cx, 0
.pix:   mov ax, 0C00h           ; a diagonal fan through int 10h 0Ch
        mov al, cl
        and al, 15
        mov dx, cx
        shr dx, 1
        int 10h
        inc cx
        cmp cx, 320
        jb .pix
        mov si, msg
.put:   lodsb
        test al, al
        jz finish
        mov ah, 0Eh
        mov bx, 000Ah
        int 10h
        jmp .put
msg:    db "EGA 320x200", 0
""",
    "mode10": r"""
stage2: mov ax, 0010h
        int 10h
        push 0A000h
        pop es
        mov dx, 3C4h
        mov bx, 1
.plane: mov ah, bl              ; each plane through the map mask: bands of 16 colours
        mov al, 2
        out dx, ax
        xor di, di
        mov cx, 80*350
.fill:  mov ax, di
        xor al, ah
        test al, bl
        mov al, 0
        jz .z
        mov al, 0FFh
.z:     stosb
        loop .fill
        shl bl, 1
        cmp bl, 16
        jb .plane
        mov ax, 0F02h
        out dx, ax
        jmp finish
""",
    "cga4": r"""
stage2: mov ax, 0004h
        int 10h
        push 0B800h
        pop es
        xor di, di
        mov cx, 4000h
.fill:  mov ax, di
        stosb
        loop .fill
        mov ax, 0C03h
        mov cx, 10
        mov dx, 11
        int 10h
        mov ax, 0E43h
        mov bx, 0002h
        int 10h
        jmp finish
""",
    "cga6": r"""
stage2: mov ax, 0006h
        int 10h
        push 0B800h
        pop es
        xor di, di
        mov cx, 4000h
.fill:  mov ax, di
        xor al, ah
        stosb
        loop .fill
        mov ax, 0E43h
        mov bx, 0001h
        int 10h
        jmp finish
""",
    "vbe32": r"""
stage2: mov ax, 4F00h
        mov di, 8000h
        mov dword [di], 'VBE2'
        int 10h
        HEX16 ax
        mov ax, 4F01h           ; 640x480x32 (QEMU's 142h)
        mov cx, 0142h
        mov di, 8200h
        int 10h
        HEX16 ax
        mov ax, [8200h + 12h]
        HEX16 ax
        mov ax, 4F02h
        mov bx, 4142h
        int 10h
        HEX16 ax
        call unreal
        mov edi, [8200h + 28h]  ; PhysBasePtr
        xor ebx, ebx
.row:   xor ecx, ecx
.col:   mov eax, ecx
        shl eax, 16
        mov ax, bx
        shl ax, 8
        or al, cl
        xor al, bl
        mov [fs:edi], eax
        add edi, 4
        inc ecx
        cmp ecx, 640
        jb .col
        inc ebx
        cmp ebx, 480
        jb .row
        jmp finish

unreal: cli                     ; big real mode: FS reaches the whole 4 GiB
        lgdt [gdtr]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp $+2
        mov ax, 8
        mov fs, ax
        and al, 0FEh
        mov eax, cr0
        and al, 0FEh
        mov cr0, eax
        xor ax, ax
        mov fs, ax
        sti
        ret
gdt:    dq 0
        dq 00CF92000000FFFFh
gdtr:   dw 15
        dd gdt
""",
    "vbe8": r"""
stage2: mov ax, 4F02h           ; 640x480x8 with a palette set through 4F09h (6-bit DAC: SeaBIOS has no 4F08h)
        mov bx, 4101h
        int 10h
        HEX16 ax
        mov di, 9000h           ; 256 entries B, G, R, 0
        xor cx, cx
.pal:   mov al, cl
        shr al, 2
        stosb
        mov al, 0
        stosb
        mov al, cl
        not al
        shr al, 2
        stosb
        mov al, 0
        stosb
        inc cx
        cmp cx, 256
        jb .pal
        mov si, 9000h           ; through the DAC's ports (SeaBIOS fails 4F09h)
        mov dx, 3C8h
        xor al, al
        out dx, al
        inc dx
        mov cx, 256
.dac:   mov al, [si + 2]
        out dx, al
        mov al, [si + 1]
        out dx, al
        mov al, [si]
        out dx, al
        add si, 4
        loop .dac
        mov ax, 4F01h
        mov cx, 0101h
        mov di, 8200h
        int 10h
        call unreal
        mov edi, [8200h + 28h]
        xor ebx, ebx
.row:   xor ecx, ecx
.col:   mov al, cl
        add al, bl
        mov [fs:edi], al
        inc edi
        inc ecx
        cmp ecx, 640
        jb .col
        inc ebx
        cmp ebx, 480
        jb .row
        jmp finish

unreal: cli
        lgdt [gdtr]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp $+2
        mov ax, 8
        mov fs, ax
        mov eax, cr0
        and al, 0FEh
        mov cr0, eax
        xor ax, ax
        mov fs, ax
        sti
        ret
gdt:    dq 0
        dq 00CF92000000FFFFh
gdtr:   dw 15
        dd gdt
""",
    "vbe-banked": r"""
stage2: mov ax, 4F01h           ; 640x480x8 without the LFB: drawn through the window at A0000h, banks switched
        mov cx, 0101h           ; with 4F05h and through the mode's WinFuncPtr
        mov di, 8200h
        int 10h
        mov ax, 4F02h
        mov bx, 0101h
        int 10h
        HEX16 ax
        mov dx, 3C8h            ; a palette through the DAC's ports
        xor al, al
        out dx, al
        inc dx
        xor cx, cx
.dac:   mov al, cl
        shr al, 2
        out dx, al
        mov al, cl
        not al
        shr al, 2
        out dx, al
        mov al, cl
        shr al, 3
        out dx, al
        inc cx
        cmp cx, 256
        jb .dac
        push 0A000h
        pop es
        xor bp, bp              ; bank 0 is drawn before any switch
.bank:  test bp, bp
        jz .draw
        mov dx, bp
        xor bx, bx
        test bp, 1
        jz .int
        cmp dword [8200h + 0Ch], 0
        je .int
        call far [8200h + 0Ch]  ; odd banks through WinFuncPtr (BL window A, DX bank)
        jmp .draw
.int:   mov ax, 4F05h
        int 10h
.draw:  xor di, di
.px:    mov ax, di
        add al, ah
        mov cx, bp
        imul cx, cx, 50
        add al, cl
        stosb
        test di, di
        jnz .px                 ; 64 KiB: DI wrapped
        inc bp
        cmp bp, 5
        jb .bank
        mov ax, 4F05h           ; back to bank 2: it reads what was drawn there
        xor bx, bx
        mov dx, 2
        int 10h
        HEX16 ax
        mov ax, 4F05h
        mov bx, 0100h
        int 10h
        HEX16 ax
        HEX16 dx
        mov al, [es:1234h]
        xor ah, ah
        HEX16 ax
        mov ax, 4F05h           ; window B is not there
        mov bx, 0001h
        xor dx, dx
        int 10h
        HEX16 ax
        xor ax, ax
        mov es, ax
        jmp finish
""",
}


def build(tmp_path, name: str) -> bytes:
    image = assemble(tmp_path, LOADER, PROGRAMS[name] + FINISH + "times 9216 - ($ - $$) db 0\n")
    return image + bytes(1440 * 1024 - len(image))


def nbdboot_screen(tmp_path, disk: bytes) -> tuple[tuple[int, int, bytes], str, Machine]:
    path = tmp_path / "disk.img"
    path.write_bytes(disk)
    machine = PC(memory_mb=16)
    machine.bios.disk.add_drive(0x00, FileDevice(path))
    machine.power_on(0x00)
    import time
    deadline = time.monotonic() + 20
    while b"DONE" not in machine.debugcon.output:
        assert time.monotonic() < deadline, machine.debugcon.output
        machine.run_slice()
    return render(machine), machine.debugcon.output.decode(errors="replace"), machine


def qemu_screen(tmp_path, disk: bytes, nbdkit) -> tuple[tuple[int, int, bytes], str]:
    require_tool("qemu-system-i386")
    path = tmp_path / "qemu.img"
    path.write_bytes(disk)
    server = nbdkit("file", str(path))
    shot = tmp_path / "qemu.ppm"
    result = qemuref.boot(server.uri, media="floppy", expect_debug="DONE", screendump=str(shot), timeout=60)
    assert result.matched, result.debug
    return qemuref.read_ppm(shot.read_bytes()), result.debug


def first_difference(a: bytes, b: bytes, width: int) -> str:
    for i in range(0, min(len(a), len(b)), 3):
        if a[i:i + 3] != b[i:i + 3]:
            return f"first differing pixel at ({i // 3 % width}, {i // 3 // width}): ours {a[i:i + 3].hex()}, QEMU's {b[i:i + 3].hex()}"
    return "same pixels, different lengths"


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_mode_renders_as_qemu(name, tmp_path, nbdkit):
    disk = build(tmp_path, name)
    (width, height, ours), debug, _ = nbdboot_screen(tmp_path, disk)
    (q_width, q_height, theirs), q_debug = qemu_screen(tmp_path, disk, nbdkit)
    assert debug == q_debug
    assert (width, height) == (q_width, q_height)
    if ours != theirs:
        (tmp_path / "ours.png").write_bytes(png(width, height, ours))
        pytest.fail(f"{name}: {first_difference(ours, theirs, width)} (see {tmp_path})")
