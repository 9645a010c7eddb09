; Geometry probe: reports what AH=08h, AH=15h and AH=48h say about the boot disk, for disks whose size and
; partition table a test writes (tests/support/int13_expect.py geometry_disk()). The partition table area (1BEh-1FDh) is
; left empty here: the test fills it. Same report format as conformance.asm.

        cpu 386
        bits 16
        org 7C00h

SNAP      equ 0500h
drive     equ 0570h
EDDBUF    equ 0600h

%include "boot.inc"

start:
        jmp 0:.canonical
.canonical:
        FLAT_SEGMENTS
        mov ax, 0202h                   ; sectors 1-2: the rest (CHS 0/0/2-3 exist under every geometry)
        mov cx, 0002h
        xor dh, dh
        mov bx, 7E00h
        int 13h
        jnc main
.halt:  hlt
        jmp .halt

        times 1BEh - ($ - $$) db 0
        times 64 db 0                   ; the partition table, written by the test
        dw 0AA55h

%include "report.inc"

main:
        mov si, hello
        call puts
        mov dl, [drive]
        mov ah, 08h
        xor di, di
        mov es, di
        int 13h
        call snap
        T "G.1"
        STATUS
        HEX "CX", 16, word [r_ecx]
        HEX "DX", 16, word [r_edx]
        ENDL
        mov dl, [drive]
        mov ah, 15h
        int 13h
        call snap
        T "G.2"
        STATUS
        HEX "CX", 16, word [r_ecx]
        HEX "DX", 16, word [r_edx]
        ENDL
        xor ax, ax
        mov ds, ax
        mov di, EDDBUF
        mov cx, 20h
        rep stosb
        mov word [EDDBUF], 1Ah
        mov si, EDDBUF
        mov dl, [drive]
        mov ah, 48h
        int 13h
        call snap
        xor ax, ax
        mov ds, ax
        T "G.3"
        STATUS
        HEX "FLAGS", 16, word [EDDBUF+2]
        HEX "CYL", 32, dword [EDDBUF+4]
        HEX "HEADS", 32, dword [EDDBUF+8]
        HEX "SPT", 32, dword [EDDBUF+12]
        HEX "SECTORS", 32, dword [EDDBUF+16]
        HEX "SECTORSHI", 32, dword [EDDBUF+20]
        ENDL
        mov si, bye
        call puts
.halt:  hlt
        jmp .halt

hello:  db "BEGIN geometry 1", 10, 0
bye:    db "END geometry", 10, 0

        times 1536 - ($ - $$) db 0
