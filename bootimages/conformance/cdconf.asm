; int 13h conformance on a CD: the El Torito no-emulation boot image of bootimages/build/cdconf.iso. Reports the
; CD cases (section 9 of the case ids) on port E9h like conformance.asm: raw facts, `T 9.xx KEY=HEX ...`.
; Under SeaBIOS the CD is drive E0h; under iPXE-style nbdboot it is the SAN drive (80h) with 2048-byte sectors.

        cpu 386
        bits 16
        org 7C00h

SNAP      equ 0500h
ENTRY     equ 0540h
drive     equ 0570h
DAP       equ 0580h
EDDBUF    equ 0600h
PKT       equ 0680h
BUF       equ 20000h
BUF_SEG   equ BUF >> 4
FILLER    equ 0CCh

%include "boot.inc"

start:
        push cs                         ; El Torito: iPXE enters at 07C0:0000, SeaBIOS at 0000:7C00
        jmp 0:.canonical
.canonical:
        mov [cs:ENTRY+0], eax
        mov [cs:ENTRY+12], edx
        mov [cs:ENTRY+28], ds
        mov [cs:ENTRY+30], es
        pop word [cs:ENTRY+36]
        mov [cs:ENTRY+34], sp
        FLAT_SEGMENTS
        jmp main

%include "report.inc"

; fill_low: CX bytes at DI = FILLER.
fill_low:
        pusha
        mov al, FILLER
        rep stosb
        popa
        ret

%macro SUM 2                            ; SUM "KEY", 512-byte units of BUF
        push edx
        push cx
        mov edx, BUF
        mov cx, %2
        call csum_linear
        pop cx
        pop edx
        HEX %1, 32, dword [cs:r_sum]
%endmacro

%macro CLEAR_BUF 1                      ; 512-byte units of BUF set to FILLER
        mov edx, BUF
        mov cx, %1
        mov al, FILLER
        call fill_linear
%endmacro

%macro PACKET 2                         ; id, DL: AX=4B01h into PKT
        mov di, PKT
        mov cx, 20h
        call fill_low
        mov si, PKT
        mov ax, 4B01h
        mov dl, %2
        CALL13
        T %1
        STATUS
        HEX "PSIZE", 8, byte [PKT]
        HEX "PMEDIA", 8, byte [PKT+1]
        HEX "PDRIVE", 8, byte [PKT+2]
        HEX "PLBA", 32, dword [PKT+4]
        HEX "PLOADSEG", 16, word [PKT+0Ch]
        HEX "PCOUNT", 16, word [PKT+0Eh]
        ENDL
%endmacro

main:
        mov si, hello
        call puts

        ; 9.10 the hand-off.
        T "9.10"
        HEX "EAX", 32, dword [ENTRY+0]
        HEX "EDX", 32, dword [ENTRY+12]
        HEX "DS", 16, word [ENTRY+28]
        HEX "ES", 16, word [ENTRY+30]
        HEX "CS", 16, word [ENTRY+36]
        HEX "HDCOUNT", 8, byte [475h]
        ENDL

        ; 9.11 AX=4B01h on the boot drive, 9.12 with DL=7Fh (old ELTORITO.SYS).
        PACKET "9.11", [drive]
        PACKET "9.12", 7Fh

        ; 9.13 AH=41h.
        mov dl, [drive]
        mov ah, 41h
        mov bx, 55AAh
        CALL13
        T "9.13"
        STATUS
        HEX "BX", 16, word [r_ebx]
        HEX "CX", 16, word [r_ecx]
        ENDL

        ; 9.14 AH=42h: the primary volume descriptor, one 2048-byte sector at LBA 16.
        CLEAR_BUF 8
        mov byte [DAP], 10h
        mov byte [DAP+1], 0
        mov word [DAP+2], 1
        mov dword [DAP+4], BUF_SEG << 16
        mov dword [DAP+8], 16
        mov dword [DAP+12], 0
        mov si, DAP
        mov ah, 42h
        mov dl, [drive]
        CALL13
        T "9.14"
        STATUS
        HEX "COUNT", 16, word [DAP+2]
        SUM "SUM", 4
        mov edx, BUF + 2048             ; nothing beyond the one 2048-byte sector
        mov cx, 1
        call csum_linear
        HEX "AFTER", 32, dword [r_sum]
        ENDL

        ; 9.15 AH=48h, 1Ah bytes: 2048-byte sectors.
        mov di, EDDBUF
        mov cx, 40h
        call fill_low
        mov word [EDDBUF], 1Ah
        mov si, EDDBUF
        mov ah, 48h
        mov dl, [drive]
        CALL13
        T "9.15"
        STATUS
        HEX "SIZE", 16, word [EDDBUF]
        HEX "FLAGS", 16, word [EDDBUF+2]
        HEX "SECTORS", 32, dword [EDDBUF+16]
        HEX "BPS", 16, word [EDDBUF+24]
        ENDL

        ; 9.16 AH=4Dh: the boot catalog's first sector into BUF.
        CLEAR_BUF 4
        mov di, PKT
        mov cx, 20h
        call fill_low
        mov byte [PKT], 8
        mov byte [PKT+1], 1
        mov dword [PKT+2], BUF
        mov word [PKT+6], 0
        mov si, PKT
        mov ah, 4Dh
        mov dl, [drive]
        CALL13
        T "9.16"
        STATUS
        SUM "SUM", 4
        ENDL

        ; 9.17 AH=08h, 9.18 AH=02h (CHS), 9.19 AH=15h on the CD.
        mov dl, [drive]
        mov ah, 08h
        CALL13
        T "9.17"
        STATUS
        ENDL
        CLEAR_BUF 4
        mov ax, 0201h
        mov cx, 0001h
        xor dh, dh
        mov dl, [drive]
        mov bx, BUF_SEG
        mov es, bx
        xor bx, bx
        CALL13
        T "9.18"
        STATUS
        ENDL
        mov dl, [drive]
        mov ah, 15h
        CALL13
        T "9.19"
        STATUS
        ENDL

        ; 9.20 AX=4B00h terminate emulation (none active).
        mov di, PKT
        mov cx, 20h
        call fill_low
        mov si, PKT
        mov ax, 4B00h
        mov dl, [drive]
        CALL13
        T "9.20"
        STATUS
        ENDL

        FINISH screen_done

hello:       db "BEGIN cdconf 1", 10, 0
bye:         db "END cdconf", 10, 0
screen_done: db "nbdboot int 13h CD conformance: done", 13, 10, 0

        times 4096 - ($ - $$) db 0      ; two 2048-byte sectors: -boot-load-size 8
