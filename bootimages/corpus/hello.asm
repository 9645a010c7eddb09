; A boot sector that SYSLINUX loads as a label's kernel (`KERNEL hello.bs`): proof that the label booted.
; It prints TEXT on the screen through int 10h and to the port E9h debug console, then halts with interrupts on
; (a PC that idles here is healthy; the tests stop it once the text is seen).
; Assemble with -DTEXT='"..."' to say which label booted.
        bits 16
        org 7C00h
%ifndef TEXT
%define TEXT "NBDBOOT-CORPUS boot sector"
%endif
start:  cli
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 7C00h
        sti
        mov si, message
.next:  lodsb
        test al, al
        jz .idle
        out 0E9h, al
        cmp al, 10
        je .next
        mov ah, 0Eh
        mov bx, 7
        int 10h
        jmp .next
.idle:  hlt
        jmp .idle
message: db 13, TEXT, 10, 0
        times 510-($-$$) db 0
        dw 0AA55h
