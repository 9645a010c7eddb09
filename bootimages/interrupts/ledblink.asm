; What Linux does after a panic (panic=0, i8042_panic_blink): set the keyboard LEDs on and off, ED then the
; LED byte to port 60h, each after the 8042's input buffer is empty, with interrupts on. A PC's keyboard answers
; FAh to each byte (IRQ1) and nothing else happens: no reset. Boot sector; reports through port E9h.
        cpu 386
        bits 16
        org 7C00h

        jmp 0:start
start:  cli
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 7C00h
        mov word [09h*4], on_kbd        ; count the ACKs as Linux's i8042 interrupt handler drops them
        mov [09h*4+2], ax
        sti
        mov si, msg_begin
        call print
        mov cx, 20
.blink: mov al, 0EDh
        call send
        mov al, cl
        and al, 1
        jz .off
        mov al, 05h                     ; caps + scroll lock on
.off:   call send
        loop .blink
        mov cx, 1000                    ; let the last IRQ1 in
.wait:  loop .wait
        mov si, msg_acks
        call print
        mov ax, [acks]
        call hex16
        mov si, msg_end
        call print
.halt:  cli
        hlt
        jmp .halt

send:   push ax
.ibf:   in al, 64h
        test al, 02h
        jnz .ibf
        pop ax
        out 60h, al
        hlt                             ; the ACK's IRQ1
        ret

on_kbd: push ax
        in al, 60h
        cmp al, 0FAh
        jne .eoi
        inc word [cs:acks]
.eoi:   mov al, 20h
        out 20h, al
        pop ax
        iret

print:  lodsb
        test al, al
        jz .done
        out 0E9h, al
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

acks    dw 0
msg_begin db "BEGIN ledblink", 10, 0
msg_acks  db "ACKs ", 0
msg_end   db 10, "END ledblink", 10, 0

        times 510 - ($ - $$) db 0
        dw 0AA55h
