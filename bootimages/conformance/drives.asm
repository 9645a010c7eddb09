; Several drives: which disk each BIOS drive number reaches, and the counts the BDA holds. Reports
; the boot drive, 40:75 and the equipment word; AH=08h on 80h, 81h, 82h, 00h and 01h; a checksum of LBA 0 of 80h
; and 81h read with AH=42h and of 00h, 01h, 80h, 81h, 82h read with AH=02h (C/H/S 0/0/1), so a test that knows
; which image sits behind each number can tell every number reaches the right disk; AH=15h and AH=41h on 81h;
; last, AH=08h on 80h after 40:75 and the floppy bits of 40:10 were cleared (iPXE re-syncs them, bootmgr needs
; it). Boots from a hard disk or a floppy. Same report format as conformance.asm; the program is sectors 0-7.

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
        LOAD_REST 7

        times 510 - ($ - $$) db 0
        dw 0AA55h

%include "report.inc"

%macro PARAMS 2                         ; id, DL
        mov dl, %2
        mov ah, 08h
        xor di, di
        mov es, di
        CALL13
        T %1
        STATUS
        HEX "CX", 16, word [r_ecx]
        HEX "DX", 16, word [r_edx]
        ENDL
%endmacro

%macro SUM_REPORT 1                     ; id: int 13h, then its status and a checksum of BUF's first sector
        CALL13
        T %1
        STATUS
        mov edx, BUF
        mov cx, 1
        call csum_linear
        HEX "SUM", 32, dword [r_sum]
        ENDL
%endmacro

%macro READCHS 2                        ; id, DL: C/H/S 0/0/1 into BUF through AH=02h
        mov edx, BUF
        mov cx, 1
        mov al, 0CCh
        call fill_linear
        mov ax, BUF_SEG
        mov es, ax
        xor bx, bx
        mov ax, 0201h
        mov cx, 0001h
        mov dx, %2                      ; DH = head 0
        SUM_REPORT %1
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
        SUM_REPORT %1
%endmacro

main:
        mov si, hello
        call puts
        T "1.10"
        HEX "DRIVE", 8, byte [drive]
        HEX "HDCOUNT", 8, byte [475h]
        HEX "EQUIP", 16, word [410h]
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
        PARAMS "1.18", 00h
        PARAMS "1.19", 01h
        READCHS "1.20", 00h
        READCHS "1.21", 01h
        READCHS "1.22", 80h
        READCHS "1.23", 81h
        READCHS "1.24", 82h
        mov byte [475h], 0
        and word [410h], 0FF3Eh
        mov dl, 80h
        mov ah, 08h
        xor di, di
        mov es, di
        CALL13
        T "1.25"
        STATUS
        HEX "DX", 16, word [r_edx]
        HEX "HDCOUNT", 8, byte [475h]
        HEX "EQUIP", 16, word [410h]
        ENDL
        mov si, bye
        call puts
.halt:  hlt
        jmp .halt

hello:  db "BEGIN drives 1", 10, 0
bye:    db "END drives", 10, 0

        times 4096 - ($ - $$) db 0
