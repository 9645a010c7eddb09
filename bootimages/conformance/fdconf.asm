; int 13h conformance on a floppy (case ids 8.x and the floppy rows of the function table):
; AH=08h and the INT 1Eh table, AH=15h/16h, the extended functions a floppy must refuse, CHS edges from the
; geometry AH=08h reports. Same report format as conformance.asm. Built as a 1.44M and a 360K image: the program
; reads its own geometry, so one source serves both; mkdata.py fills the data sectors.

        cpu 386
        bits 16
        org 7C00h

SNAP      equ 0500h
ENTRY     equ 0540h
drive     equ 0570h
spt       equ 0572h             ; sectors per track, heads, cylinders from AH=08h
heads     equ 0574h
cyls      equ 0576h
DAP       equ 0580h
EDDBUF    equ 0600h
BUF       equ 20000h
BUF_SEG   equ BUF >> 4
FILLER    equ 0CCh
PROGRAM_SECTORS equ 8           ; fits the first track of every floppy format (8 or more sectors)

%include "boot.inc"

start:
        jmp 0:.canonical
.canonical:
        mov [cs:ENTRY+0], eax
        mov [cs:ENTRY+12], edx
        FLAT_SEGMENTS
        LOAD_REST PROGRAM_SECTORS - 1

        times 510 - ($ - $$) db 0
        dw 0AA55h

%include "report.inc"

%macro SUM 2
        push edx
        push cx
        mov edx, BUF
        mov cx, %2
        call csum_linear
        pop cx
        pop edx
        HEX %1, 32, dword [cs:r_sum]
%endmacro

; chs_read: AL=count, CX, DH; BUF filled first; DL = the boot drive, ES:BX = BUF_SEG:0. Then int 13h + snap.
chs_read:
        push eax
        push edx
        push cx
        mov edx, BUF
        mov cx, 40
        mov al, FILLER
        call fill_linear
        pop cx
        pop edx
        pop eax
        mov ah, 02h
        mov dl, [drive]
        mov bx, BUF_SEG
        mov es, bx
        xor bx, bx
        int 13h
        call snap
        xor bx, bx
        mov ds, bx
        mov es, bx
        ret

main:
        mov si, hello
        call puts

        T "8.10"
        HEX "EAX", 32, dword [ENTRY+0]
        HEX "EDX", 32, dword [ENTRY+12]
        HEX "EQUIP", 16, word [410h]
        ENDL

        ; 8.11 AH=08h: type, geometry, the parameter table.
        mov dl, [drive]
        mov ah, 08h
        xor di, di
        mov es, di
        CALL13
        T "8.11"
        STATUS
        HEX "AL", 8, byte [r_eax]
        HEX "BX", 16, word [r_ebx]
        HEX "CX", 16, word [r_ecx]
        HEX "DX", 16, word [r_edx]
        HEX "ES", 16, word [r_es]
        HEX "DI", 16, word [r_edi]
        ENDL
        mov al, [r_ecx]                 ; S = CL & 3Fh, H = DH + 1, C = CH | (CL & C0h) << 2, + 1
        and ax, 3Fh
        mov [spt], ax
        movzx ax, byte [r_edx+1]
        inc ax
        mov [heads], ax
        movzx ax, byte [r_ecx]
        shl ax, 2
        mov al, [r_ecx+1]
        inc ax
        mov [cyls], ax

        ; 8.12 the INT 1Eh table: where it is, its sectors-per-track byte, and whether it is writable (FreeDOS
        ; patches byte 4).
        les di, [1Eh * 4]
        mov al, [es:di+4]
        mov [r_ebp], al
        not byte [es:di+4]
        mov ah, [es:di+4]
        not byte [es:di+4]
        xor al, ah
        mov [r_ebp+1], al              ; FFh if the write took
        xor ax, ax
        mov es, ax
        T "8.12"
        HEX "VEC", 32, dword [1Eh * 4]
        HEX "SPT", 8, byte [r_ebp]
        HEX "WRITABLE", 8, byte [r_ebp+1]
        ENDL

        ; 8.13 AH=15h, 8.14 AH=41h, 8.15 AH=42h, 8.16 AH=48h, 8.17 AH=16h on the floppy.
        mov dl, [drive]
        mov ah, 15h
        CALL13
        T "8.13"
        STATUS
        ENDL
        mov dl, [drive]
        mov ah, 41h
        mov bx, 55AAh
        CALL13
        T "8.14"
        STATUS
        HEX "BX", 16, word [r_ebx]
        ENDL
        mov dword [DAP], 00010010h
        mov dword [DAP+4], BUF_SEG << 16
        mov dword [DAP+8], 5
        mov dword [DAP+12], 0
        mov si, DAP
        mov ah, 42h
        mov dl, [drive]
        CALL13
        T "8.15"
        STATUS
        ENDL
        mov word [EDDBUF], 1Ah
        mov si, EDDBUF
        mov ah, 48h
        mov dl, [drive]
        CALL13
        T "8.16"
        STATUS
        ENDL
        mov dl, [drive]
        mov ah, 16h
        CALL13
        T "8.17"
        STATUS
        ENDL

        ; 8.18 the last sector of the disk; 8.19 sector S+1; 8.20 two sectors from the last sector of track 0,
        ; head 0 (across a head); 8.21 c1 h0 s1.
        mov al, 1
        mov cx, [cyls]
        dec cx
        xchg cl, ch
        shl cl, 6
        or cl, [spt]
        mov dh, [heads]
        dec dh
        call chs_read
        T "8.18"
        STATUS
        SUM "SUM", 1
        ENDL
        mov al, 1
        mov cl, [spt]
        inc cl
        mov ch, 0
        mov dh, 0
        call chs_read
        T "8.19"
        STATUS
        ENDL
        mov al, 2
        mov cl, [spt]
        mov ch, 0
        mov dh, 0
        call chs_read
        T "8.20"
        STATUS
        HEX "AL", 8, byte [r_eax]
        SUM "SUM", 2
        ENDL
        mov al, 1
        mov cx, 0101h
        mov dh, 0
        call chs_read
        T "8.21"
        STATUS
        SUM "SUM", 1
        HEX "SPT", 16, word [spt]
        HEX "HEADS", 16, word [heads]
        HEX "CYLS", 16, word [cyls]
        ENDL

        FINISH screen_done

hello:       db "BEGIN fdconf 1", 10, 0
bye:         db "END fdconf", 10, 0
screen_done: db "nbdboot int 13h floppy conformance: done", 13, 10, 0

        times PROGRAM_SECTORS * 512 - ($ - $$) db 0
