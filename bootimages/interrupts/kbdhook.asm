; The keyboard intercept (int 15h AH=4Fh) as DOS keyboard drivers use it: the BIOS's IRQ1 path offers each scan
; code to int 15h with CF set before processing it. This hook turns A's make code (1Eh) into B's (30h) and
; drops S's (1Fh, CF clear); the rest goes on to the BIOS's int 15h. Typed: a, s, d, A (shift, a): int 16h
; must give b, d and B (the BIOS's shift flag applied to the changed code). Boot sector; reports through
; port E9h and on the screen (the QEMU side types once KEYS? shows).
        cpu 386
        bits 16
        org 7C00h

        jmp 0:start
start:  cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 7C00h
        mov eax, [15h*4]
        mov [old15], eax
        mov word [15h*4], hook15
        mov [15h*4+2], ds
        sti
        mov si, msg_begin
        call print
        mov cx, 3
.key:   xor ah, ah                      ; read a key
        int 16h
        push cx
        push ax
        mov si, msg_key
        call print
        pop ax
        call hex16
        mov ah, 02h                     ; shift flags, after the key
        int 16h
        mov si, msg_flags
        call print
        call hex8
        mov si, msg_nl
        call print
        pop cx
        loop .key
        mov si, msg_end
        call print
.halt:  cli
        hlt
        jmp .halt

hook15: cmp ah, 4Fh
        jne .chain
        cmp al, 1Eh
        jne .notA
        mov al, 30h                     ; A's make becomes B's
        stc
        retf 2
.notA:  cmp al, 1Fh
        jne .chain
        clc                             ; S's make: dropped
        retf 2
.chain: jmp far [cs:old15]

; print SI to E9h and the screen
print:  lodsb
        test al, al
        jz .done
        out 0E9h, al
        mov ah, 0Eh
        xor bx, bx
        int 10h
        jmp print
.done:  ret

hex16:  push ax
        mov al, ah
        call hex8
        pop ax
hex8:   push ax
        shr al, 4
        call .nib
        pop ax
.nib:   and al, 0Fh
        add al, '0'
        cmp al, '9'
        jbe .out
        add al, 7
.out:   out 0E9h, al
        ret

old15   dd 0
msg_begin db "BEGIN kbdhook", 13, 10, "KEYS?", 13, 10, 0
msg_key   db "key ", 0
msg_flags db " flags ", 0
msg_nl    db 10, 0
msg_end   db "END kbdhook", 10, 0

        times 510 - ($ - $$) db 0
        dw 0AA55h
