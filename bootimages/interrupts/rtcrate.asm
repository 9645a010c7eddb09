; The RTC's periodic interrupt at 1024 Hz (register A rate 6, register B PIE), counted over 18 PIT ticks
; (int 1Ch, 18 x 54.9 ms = 0.989 s: about 1012 IRQ8s), twice: once idling in `hlt` between interrupts and
; once spinning on the tick count, as a busy guest does. Boot sector; reports through port E9h.
        cpu 386
        bits 16
        org 7C00h

TICKS   equ 18

        jmp 0:start
start:  cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 7C00h
        mov word [1Ch*4], on_tick       ; int 1Ch: the BIOS's IRQ0 path calls it once per PIT tick
        mov [1Ch*4+2], ax
        mov word [70h*4], on_rtc        ; IRQ8
        mov [70h*4+2], ax
        in al, 0A1h                     ; unmask IRQ8 and the cascade
        and al, 0FEh
        out 0A1h, al
        in al, 21h
        and al, 0FBh
        out 21h, al
        mov al, 0Ah                     ; register A: 32.768 kHz divider, rate 6 = 1024 Hz
        out 70h, al
        mov al, 26h
        out 71h, al
        mov al, 0Bh                     ; register B: periodic interrupt on
        out 70h, al
        in al, 71h
        or al, 40h
        mov ah, al
        mov al, 0Bh
        out 70h, al
        mov al, ah
        out 71h, al
        mov al, 0Ch                     ; register C: clear a pending flag
        out 70h, al
        in al, 71h
        sti

        mov si, msg_begin
        call print

        ; idle between interrupts
        call align_to_tick
        mov word [irq8s], 0
        mov word [ticks], 0
.idle:  hlt
        cmp word [ticks], TICKS
        jb .idle
        mov ax, [irq8s]
        mov si, msg_idle
        call report

        ; spin between interrupts
        call align_to_tick
        mov word [irq8s], 0
        mov word [ticks], 0
.spin:  cmp word [ticks], TICKS
        jb .spin
        mov ax, [irq8s]
        mov si, msg_busy
        call report

        mov si, msg_end
        call print
.halt:  cli
        hlt
        jmp .halt

; start counting on a tick edge
align_to_tick:
        mov ax, [ticks]
.wait:  hlt
        cmp ax, [ticks]
        je .wait
        ret

on_tick:
        inc word [cs:ticks]
        iret

on_rtc: push ax
        mov al, 0Ch                     ; reading C acknowledges the interrupt; the next one can come
        out 70h, al
        in al, 71h
        test al, 40h
        jz .eoi
        inc word [cs:irq8s]
.eoi:   mov al, 20h
        out 0A0h, al
        out 20h, al
        pop ax
        iret

; print SI, then AX in decimal, then a newline
report: push ax
        call print
        pop ax
        call decimal
        mov si, msg_nl
        jmp print

decimal:
        xor cx, cx
        mov bx, 10
.div:   xor dx, dx
        div bx
        push dx
        inc cx
        test ax, ax
        jnz .div
.out:   pop ax
        add al, '0'
        out 0E9h, al
        loop .out
        ret

print:  lodsb
        test al, al
        jz .done
        out 0E9h, al
        jmp print
.done:  ret

ticks   dw 0
irq8s   dw 0
msg_begin db "BEGIN rtcrate", 10, 0
msg_idle  db "IRQ8s in 18 ticks, idle: ", 0
msg_busy  db "IRQ8s in 18 ticks, busy: ", 0
msg_nl    db 10, 0
msg_end   db "END rtcrate", 10, 0

        times 510 - ($ - $$) db 0
        dw 0AA55h
