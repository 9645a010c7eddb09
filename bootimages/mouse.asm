; A boot sector that turns the PS/2 mouse on and prints every packet it receives, on the screen and on
; port E9h, a line each: "Pn:SS XX YY" (n counts packets; SS the status byte, XX and YY the movement bytes).
;   nasm -f bin -o mouse.img mouse.asm               through the 8042: aux port on, IRQ12, D4h F4h
;   nasm -f bin -DBIOS_MOUSE -o mouse.img mouse.asm  through int 15h C2xxh, as a DOS mouse driver does
; It prints "READY" once the mouse reports. tests/test_mouse_script.py drives it with --keys pointer items
; and compares the packets with QEMU's for the same events.
        cpu 386
        bits 16
        org 7C00h

        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 7C00h
        cld
        cli
        mov word [received], 0
        mov word [printed], 0
%ifdef BIOS_MOUSE
        mov ax, 0C205h                  ; initialize: 3-byte packets (it forgets a handler set before)
        mov bh, 3
        int 15h
        jc fail
        push cs
        pop es
        mov bx, handler
        mov ax, 0C207h                  ; the far-call packet handler
        int 15h
        jc fail
        mov ax, 0C200h                  ; enable
        mov bh, 1
        int 15h
        jc fail
%else
        mov word [74h * 4], irq12
        mov [74h * 4 + 2], cs
        mov al, 0A8h                    ; enable the aux port
        call command
        mov al, 20h                     ; read the command byte
        call command
        call read_byte
        and al, ~20h                    ; aux clock on
        or al, 02h                      ; aux IRQ12 on
        mov ah, al
        mov al, 60h
        call command
        mov al, ah
        out 60h, al
        mov al, 0D4h                    ; to the mouse: enable data reporting
        call command
        mov al, 0F4h
        out 60h, al
        call read_byte
        cmp al, 0FAh
        jne fail
        in al, 0A1h                     ; unmask IRQ12 (slave IRQ4) and the cascade
        and al, ~10h
        out 0A1h, al
        in al, 21h
        and al, ~04h
        out 21h, al
%endif
        mov si, ready
        call print
        sti
.wait:  hlt
        mov bx, [printed]
        cmp bx, [received]
        je .wait
        mov ax, bx
        xor dx, dx
        mov cx, 3
        div cx
        test dx, dx
        jnz .byte
        mov al, 'P'                     ; a packet starts
        call putc
        mov ax, bx
        xor dx, dx
        mov cx, 3
        div cx
        inc ax
        call decimal
        mov al, ':'
        call putc
.byte:  mov al, [packet + bx]
        call hex8
        inc bx
        mov [printed], bx
        mov ax, bx
        xor dx, dx
        mov cx, 3
        div cx
        mov al, ' '
        test dx, dx
        jnz .space
        mov al, 13                      ; a packet ends its line
        call putc
        mov al, 10
.space: call putc
        jmp .wait

fail:   mov si, failed
        call print
        cli
        hlt

%ifdef BIOS_MOUSE
handler:                                ; far call: [bp+6] Z, [bp+8] Y, [bp+10] X, [bp+12] status
        push bp
        mov bp, sp
        push ax
        push bx
        mov bx, [cs:received]
        cmp bx, 3 * 40
        jae .full
        mov al, [bp + 12]
        mov [cs:packet + bx], al
        mov al, [bp + 10]
        mov [cs:packet + bx + 1], al
        mov al, [bp + 8]
        mov [cs:packet + bx + 2], al
        add word [cs:received], 3
.full:  pop bx
        pop ax
        pop bp
        retf
%else
irq12:  push ax
        push bx
        in al, 64h                      ; a mouse byte there? (the IRQ of the ACK read while polling
        and al, 21h                     ; is still pending when IRQ12 is unmasked)
        cmp al, 21h
        jne .full
        in al, 60h
        mov bx, [cs:received]
        cmp bx, 3 * 40
        jae .full
        mov [cs:packet + bx], al
        inc word [cs:received]
.full:  mov al, 20h
        out 0A0h, al
        out 20h, al
        pop bx
        pop ax
        iret

command:                                ; AL to the 8042's command port, once it takes input
        push ax
.busy:  in al, 64h
        test al, 02h
        jnz .busy
        pop ax
        out 64h, al
        ret

read_byte:                              ; AL = the next byte of the output buffer
        in al, 64h
        test al, 01h
        jz read_byte
        in al, 60h
        ret
%endif

print:  lodsb
        test al, al
        jz .done
        call putc
        jmp print
.done:  ret

putc:   out 0E9h, al                    ; AL on port E9h and the screen
        push ax
        push bx
        mov ah, 0Eh
        xor bx, bx
        int 10h
        pop bx
        pop ax
        ret

hex8:   push ax
        shr al, 4
        call .digit
        pop ax
        and al, 0Fh
.digit: add al, '0'
        cmp al, '9'
        jbe .out
        add al, 7
.out:   jmp putc

decimal:                                ; AX (0-99)
        mov cl, 10
        div cl
        test al, al
        jz .ones
        push ax
        add al, '0'
        call putc
        pop ax
.ones:  mov al, ah
        add al, '0'
        jmp putc

ready:  db "READY", 13, 10, 0
failed: db "FAIL ", 0
        times 510 - ($ - $$) db 0
        dw 0AA55h

received equ 0600h                      ; bytes the mouse sent (the handler stores them at packet)
printed equ 0602h
packet equ 0610h
