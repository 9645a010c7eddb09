; Two hard disks (plan item 1): the boot disk and a second one. Reports AH=08h on 80h, 81h and 82h (absent),
; a checksum of LBA 0 of each disk read with AH=42h, AH=15h and AH=41h on 81h, and the BDA drive count. Served
; with the boot disk first and any other image (e.g. l2-syslinux.img) as 81h. Same report format as
; conformance.asm; the program is sectors 0-3.

        cpu 386
        bits 16
        org 7C00h

SNAP      equ 0500h
drive     equ 0570h
DAP       equ 0580h
BUF       equ 20000h
BUF_SEG   equ BUF >> 4

%include "boot.inc"

start:
        jmp 0:.canonical
.canonical:
        FLAT_SEGMENTS
        mov ax, 0203h
        mov cx, 0002h
        xor dh, dh
        mov bx, 7E00h
        int 13h
        jnc main
.halt:  hlt
        jmp .halt

        times 510 - ($ - $$) db 0
        dw 0AA55h

%include "report.inc"

%macro PARAMS 2                         ; id, DL
        mov dl, %2
        mov ah, 08h
        xor di, di
        mov es, di
        int 13h
        call snap
        xor ax, ax
        mov ds, ax
        mov es, ax
        T %1
        STATUS
        HEX "CX", 16, word [r_ecx]
        HEX "DX", 16, word [r_edx]
        ENDL
%endmacro

%macro READ0 2                          ; id, DL: LBA 0 into BUF through AH=42h
        mov edx, BUF
        mov cx, 1
        mov al, 0CCh
        call fill_linear
        mov dword [DAP], 00010010h
        mov dword [DAP+4], BUF_SEG << 16
        mov dword [DAP+8], 0
        mov dword [DAP+12], 0
        mov si, DAP
        mov ah, 42h
        mov dl, %2
        int 13h
        call snap
        xor ax, ax
        mov ds, ax
        mov es, ax
        T %1
        STATUS
        mov edx, BUF
        mov cx, 1
        call csum_linear
        HEX "SUM", 32, dword [r_sum]
        ENDL
%endmacro

main:
        mov si, hello
        call puts
        T "1.10"
        HEX "DRIVE", 8, byte [drive]
        HEX "HDCOUNT", 8, byte [475h]
        ENDL
        PARAMS "1.11", 80h
        PARAMS "1.12", 81h
        PARAMS "1.13", 82h
        READ0 "1.14", 80h
        READ0 "1.15", 81h
        mov dl, 81h
        mov ah, 15h
        int 13h
        call snap
        T "1.16"
        STATUS
        HEX "CX", 16, word [r_ecx]
        HEX "DX", 16, word [r_edx]
        ENDL
        mov dl, 81h
        mov ah, 41h
        mov bx, 55AAh
        int 13h
        call snap
        T "1.17"
        STATUS
        HEX "BX", 16, word [r_ebx]
        ENDL
        mov si, bye
        call puts
.halt:  hlt
        jmp .halt

hello:  db "BEGIN drives 1", 10, 0
bye:    db "END drives", 10, 0

        times 2048 - ($ - $$) db 0
