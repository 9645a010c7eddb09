; Real-mode vectors 0-7: `int n` versus the CPU exception with the same vector.
; Boot sector; reports through port E9h. Each handler prints its vector and the
; return IP it finds on its stack: after the instruction for `int n`, int3, into
; and the single-step trap; on the instruction for the #DE and #BR faults, whose
; handlers fix the operands so the restarted instruction succeeds.
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
        mov di, 0                       ; install handlers for vectors 0-7
        mov si, handlers
        mov cx, 8
.inst:  lodsw
        stosw
        xor ax, ax
        stosw
        loop .inst
        sti
        mov si, msg_begin
        call print

        ; software int n for every vector 0-7: IP after the 2-byte instruction
        int 0
        int 1
        int 2
        int 3
        int 4
        int 5
        int 6
        int 7
        ; the one-byte forms
        int3
        mov al, 7Fh
        add al, 1                       ; OF=1
        into
        ; into with OF=0 does nothing
        xor ax, ax
        into

        ; #DE: a fault, the handler makes the divisor 2 and the div runs again
        mov byte [fix_div], 1
        mov ax, 100
        xor dx, dx
        xor bx, bx
div_at: div bx
        mov si, msg_quot
        call print
        call hex16
        call newline

        ; #BR: bound with an index out of range, the handler moves it into range
        mov ax, 50
bound_at:
        bound ax, [bounds]
        mov si, msg_bound
        call print
        call hex16
        call newline

        ; single step: TF set by popf traps after the next instruction
        pushf
        pop ax
        or ax, 0100h
        push ax
        popf
        nop
step_after:
        nop
        mov si, msg_end
        call print
.halt:  cli
        hlt
        jmp .halt

; --- handlers: push the vector, then one common body -------------------------
%assign v 0
%rep 8
h%+v:   push v
        jmp vec_common
%assign v v+1
%endrep

vec_common:
        push bp
        mov bp, sp                      ; [bp+2] vector, [bp+4] IP, [bp+8] FLAGS
        push ax
        push si
        mov si, msg_vec
        call print
        mov al, [bp+2]
        add al, '0'
        out 0E9h, al
        mov si, msg_ip
        call print
        mov ax, [bp+4]
        call hex16
        call newline
        pop si
        pop ax
        cmp byte [bp+2], 0
        jne .not_de
        cmp byte [fix_div], 0
        je .done
        mov byte [fix_div], 0
        mov bx, 2                       ; the restarted div divides by 2
        jmp .done
.not_de:
        cmp byte [bp+2], 1
        jne .not_db
        and word [bp+8], ~0100h         ; clear TF in the stacked FLAGS
        jmp .done
.not_db:
        cmp byte [bp+2], 5
        jne .done
        cmp ax, 50
        jne .done
        mov ax, 5                       ; back inside [0, 10]
.done:  pop bp
        add sp, 2
        iret

print:  push ax
.next:  lodsb
        test al, al
        jz .done
        out 0E9h, al
        jmp .next
.done:  pop ax
        ret
newline:
        push ax
        mov al, 10
        out 0E9h, al
        pop ax
        ret
hex16:  push ax
        push cx
        mov cx, 4
.digit: rol ax, 4
        push ax
        and al, 0Fh
        add al, '0'
        cmp al, '9'
        jbe .out
        add al, 7
.out:   out 0E9h, al
        pop ax
        loop .digit
        pop cx
        pop ax
        ret

handlers: dw h0, h1, h2, h3, h4, h5, h6, h7

bounds:   dw 0, 10
fix_div:  db 0
msg_begin: db "BEGIN rmvectors", 10, 0
msg_vec:  db "vector ", 0
msg_ip:   db " return IP ", 0
msg_quot: db "100/2 after #DE = ", 0
msg_bound: db "index after #BR = ", 0
msg_end:  db "END rmvectors", 10, 0

        times 510 - ($ - $$) db 0
        dw 0AA55h
