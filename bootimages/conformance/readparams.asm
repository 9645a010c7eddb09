; Parameter-driven reads for property tests: performs the reads listed in a parameter sector and reports a
; checksum of each buffer on port E9h, so a test can drive random CHS/LBA/count/buffer placements through int 13h
; and compare with the image file.
;
; The parameter sector is sector PARAM_LBA (7) of the disk, loaded with the program at 0000:8A00. Up to 31 entries
; of 16 bytes, ended by op 0:
;   +0 u8 op: 02h CHS read (AH=02h) | 42h extended read | 00h end
;   +1 u8 count (AL, or the DAP count byte)
;   +2 u16 buffer offset, +4 u16 buffer segment
;   +6 u16 CX and +8 u8 DH for AH=02h
;   +9 u8 DAP size for AH=42h (0 means 10h)
;   +10 u32 LBA for AH=42h
; The buffer (count sectors from segment:offset, linear) is filled with CCh first. Result lines:
;   T P.<n> CF=x AH=xx AL=xx COUNT=xxxx SUM=xxxxxxxx    (COUNT = the DAP count word after the call)
; then `END readparams`. tests/support/int13_expect.py param_sector() writes the sector, read_expectation() predicts.

        cpu 386
        bits 16
        org 7C00h

SNAP      equ 0500h
DAP       equ 0580h
drive     equ 0570h
FILLER    equ 0CCh
PARAM_LBA equ 7
PARAMS    equ 7C00h + PARAM_LBA * 512

%include "boot.inc"

start:
        jmp 0:.canonical
.canonical:
        FLAT_SEGMENTS
        LOAD_REST PARAM_LBA  ; sectors 1..PARAM_LBA: the program and the parameters

%include "geometry.inc"
%include "report.inc"

main:
        in al, 92h                      ; A20 on: buffers may sit in the high memory area
        or al, 2
        and al, 0FEh
        out 92h, al
        mov si, hello
        call puts
        mov bx, PARAMS
        xor bp, bp                      ; entry number
.entry:
        cmp byte [bx], 0
        je .done
        cmp bp, 31
        je .done
        push bx
        call run_entry
        pop bx
        add bx, 16
        inc bp
        jmp .entry
.done:
        mov si, bye
        call puts
.halt:  hlt
        jmp .halt

; run_entry: BX = the entry, BP = its number.
run_entry:
        mov [entry], bx
        movzx edx, word [bx+4]          ; the buffer's linear address, filled
        shl edx, 4
        movzx eax, word [bx+2]
        add edx, eax
        movzx cx, byte [bx+1]
        mov al, FILLER
        call fill_linear
        mov [buffer], edx
        mov word [DAP+2], 0
        cmp byte [bx], 42h
        je .ext
        mov al, [bx+1]                  ; AH=02h
        mov ah, 02h
        mov cx, [bx+6]
        mov dh, [bx+8]
        mov dl, [drive]
        les bx, [bx+2]
        int 13h
        call snap
        jmp .report
.ext:
        mov al, [bx+9]
        test al, al
        jnz .size
        mov al, 10h
.size:  mov [DAP], al
        mov byte [DAP+1], 0
        movzx ax, byte [bx+1]
        mov [DAP+2], ax
        mov eax, [bx+2]
        mov [DAP+4], eax
        mov eax, [bx+10]
        mov [DAP+8], eax
        mov dword [DAP+12], 0
        mov si, DAP
        mov ah, 42h
        mov dl, [drive]
        int 13h
        call snap
.report:
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov bx, [entry]
        mov si, tag
        call puts
        mov ax, bp
        call hex8
        STATUS
        HEX "AL", 8, byte [r_eax]
        HEX "COUNT", 16, word [DAP+2]
        mov edx, [buffer]
        movzx cx, byte [bx+1]
        call csum_linear
        HEX "SUM", 32, dword [r_sum]
        ENDL
        ret

buffer: dd 0
entry:  dw 0
tag:    db "T P.", 0
hello:  db "BEGIN readparams 1", 10, 0
bye:    db "END readparams", 10, 0

        times PARAM_LBA * 512 - ($ - $$) db 0
        ; The default parameter sector: one 42h read of LBA 100 to 2000:0000 and one CHS read of c0 h1 s1.
        db 42h, 1
        dw 0, 2000h, 0
        db 0, 10h
        dd 100
        dw 0
        db 02h, 1
        dw 0, 2000h, 0001h
        db 1, 0
        dd 0
        dw 0
        times (PARAM_LBA + 1) * 512 - ($ - $$) db 0
