; nbdboot demo, stage 2: loaded at 0000:8000 by the demo MBR (entry at +4 with
; DL = boot drive). Reports the drive parameters (int 13h 08h and 48h) and
; memory as the BIOS describes it, reads the disk's last sector back with int
; 13h and prints it, then idles.

        cpu     386
        bits    16
        org     8000h

        db      "STG2"
entry:
        mov     [drive], dl
        mov     si, msg_hello
        call    puts

        mov     ah, 08h
        mov     dl, [drive]
        xor     di, di
        mov     es, di
        int     13h
        jc      .no_chs
        push    cx
        push    dx
        mov     si, msg_chs
        call    puts
        mov     al, cl              ; cylinders = ((CL & C0h) << 2 | CH) + 1
        shr     al, 6
        mov     ah, al
        mov     al, ch
        inc     ax
        call    dec32_ax
        mov     si, msg_heads
        call    puts
        pop     dx
        movzx   ax, dh
        inc     ax
        call    dec32_ax
        mov     si, msg_spt
        call    puts
        pop     cx
        mov     ax, cx
        and     ax, 3Fh
        call    dec32_ax
        mov     si, msg_crlf
        call    puts
.no_chs:
        mov     word [params], 30
        mov     ah, 48h
        mov     dl, [drive]
        mov     si, params
        int     13h
        jc      .no_size
        mov     si, msg_total
        call    puts
        mov     eax, [params + 16]
        call    dec32
        mov     si, msg_sectors
        call    puts
        mov     ax, [params + 24]
        call    dec32_ax
        mov     si, msg_bytes
        call    puts
.no_size:

        int     12h
        push    ax
        mov     si, msg_base
        call    puts
        pop     ax
        call    dec32_ax
        mov     si, msg_kib
        call    puts

        ; sum the usable RAM in the E820 map
        xor     ebx, ebx
        xor     ebp, ebp
        mov     di, e820_entry
.next:  mov     eax, 0E820h
        mov     edx, 534D4150h
        mov     ecx, 20
        push    ds
        pop     es
        int     15h
        jc      .done
        cmp     dword [e820_entry + 16], 1
        jne     .skip
        mov     eax, [e820_entry + 8]
        shr     eax, 10
        add     ebp, eax
.skip:  test    ebx, ebx
        jnz     .next
.done:  mov     si, msg_e820
        call    puts
        mov     eax, ebp
        call    dec32
        mov     si, msg_kib
        call    puts

        ; read the last sector (size from int 13h 48h) with EDD
        mov     word [params], 30
        mov     ah, 48h
        mov     dl, [drive]
        mov     si, params
        int     13h
        jc      .no_edd
        mov     eax, [params + 16]
        dec     eax
        mov     [dap_lba], eax
        mov     si, dap
        mov     ah, 42h
        mov     dl, [drive]
        int     13h
        jc      .no_edd
        mov     si, msg_last
        call    puts
        mov     si, buffer
        call    puts
        mov     si, msg_crlf
        call    puts
.no_edd:
        mov     si, msg_done
        call    puts
.idle:  sti
        hlt
        jmp     .idle

puts:
        lodsb
        test    al, al
        jz      .done
        mov     ah, 0Eh
        mov     bx, 0007h
        int     10h
        jmp     puts
.done:  ret

dec32_ax:
        movzx   eax, ax
dec32:                              ; EAX in decimal
        xor     cx, cx
        mov     ebx, 10
.div:   xor     edx, edx
        div     ebx
        push    dx
        inc     cx
        test    eax, eax
        jnz     .div
.put:   pop     ax
        add     al, '0'
        mov     ah, 0Eh
        push    cx
        mov     bx, 0007h
        int     10h
        pop     cx
        loop    .put
        ret

msg_hello       db "stage 2 running", 13, 10, 0
msg_chs         db "geometry (int 13h 08h): cylinders ", 0
msg_heads       db ", heads ", 0
msg_spt         db ", sectors/track ", 0
msg_total       db "size (int 13h 48h): ", 0
msg_sectors     db " sectors of ", 0
msg_bytes       db " bytes", 13, 10, 0
msg_base        db "base memory (int 12h): ", 0
msg_e820        db "usable RAM (int 15h E820): ", 0
msg_kib         db " KiB", 13, 10, 0
msg_last        db "last sector says: ", 0
msg_done        db "demo complete", 13, 10, 0
msg_crlf        db 13, 10, 0
drive           db 0
dap:            db 16, 0
                dw 1, buffer, 0
dap_lba:        dq 0
params          equ 0600h
e820_entry      equ 0700h
buffer          equ 0A000h
