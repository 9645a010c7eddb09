; nbdboot demo, stage 1: an MBR that checks for int 13h extensions (41h),
; loads stage 2 over int 13h (EDD 42h, CHS 02h as the fallback), prints what it
; read and jumps to it; stage 2 reports the drive parameters. The image is
; this sector, stage 2, and a last sector with a message stage 2 reads back.
;
; Build (make bootimages/demo.img): nasm -f bin -i build/ -o bootimages/demo.img bootimages/demo-mbr.asm
;        after nasm -f bin -o build/demo-stage2.bin bootimages/demo-stage2.asm

        cpu     386
        bits    16
        org     7C00h

IMAGE_SECTORS   equ 64
STAGE2_ADDR     equ 8000h

start:
        cli
        xor     ax, ax
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     sp, 7C00h
        sti
        mov     [drive], dl

        mov     si, msg_hello
        call    puts
        mov     al, [drive]
        call    hex8
        call    crlf

        ; EDD present?
        mov     ah, 41h
        mov     bx, 55AAh
        mov     dl, [drive]
        int     13h
        jc      .no_edd
        cmp     bx, 0AA55h
        jne     .no_edd
        mov     byte [edd], 1
        push    ax
        mov     si, msg_edd
        call    puts
        pop     ax
        mov     al, ah
        call    hex8
        push    cx
        mov     si, msg_features
        call    puts
        pop     ax
        call    hex8
        call    crlf
        jmp     .geometry
.no_edd:
        mov     si, msg_no_edd
        call    puts

.geometry:
        cmp     byte [edd], 0
        je      .load_chs

.load_lba:
        mov     si, dap
        mov     ah, 42h
        mov     dl, [drive]
        int     13h
        jc      disk_error
        mov     si, msg_via_lba
        jmp     .loaded

.load_chs:
        mov     ax, 0200h + STAGE2_SECTORS
        mov     cx, 0002h
        xor     dh, dh
        mov     dl, [drive]
        mov     bx, STAGE2_ADDR
        int     13h
        jc      disk_error
        mov     si, msg_via_chs

.loaded:
        call    puts
        mov     al, STAGE2_SECTORS
        call    hex8
        mov     si, msg_loaded
        call    puts
        mov     eax, [STAGE2_ADDR]
        cmp     eax, 'STG2'
        jne     bad_stage2
        mov     si, msg_sig
        call    puts
        mov     dl, [drive]
        jmp     0:STAGE2_ADDR + 4

bad_stage2:
        mov     si, msg_bad
        call    puts
        jmp     halt
disk_error:
        mov     si, msg_disk_error
        call    puts
        mov     al, ah
        call    hex8
        call    crlf
halt:
        sti
        hlt
        jmp     halt

; --- output through int 10h teletype ------------------------------------------
puts:
        lodsb
        test    al, al
        jz      .done
        mov     ah, 0Eh
        mov     bx, 0007h
        int     10h
        jmp     puts
.done:  ret

crlf:
        mov     si, msg_crlf
        jmp     puts

hex8:
        push    ax
        shr     al, 4
        call    .nibble
        pop     ax
.nibble:
        and     al, 0Fh
        add     al, '0'
        cmp     al, '9'
        jbe     .out
        add     al, 7
.out:   mov     ah, 0Eh
        mov     bx, 0007h
        int     10h
        ret

msg_hello       db "demo MBR: drive ", 0
msg_edd         db "EDD ", 0
msg_features    db "h, features ", 0
msg_no_edd      db "no EDD", 13, 10, 0
msg_via_lba     db "int 13h 42h read ", 0
msg_via_chs     db "int 13h 02h read ", 0
msg_loaded      db "h sectors to 0:8000", 13, 10, 0
msg_sig         db "found STG2", 13, 10, 0
msg_bad         db "no STG2", 13, 10, 0
msg_disk_error  db "disk error ", 0
msg_crlf        db 13, 10, 0

drive           db 0
edd             db 0
dap:            db 16, 0
                dw STAGE2_SECTORS, STAGE2_ADDR, 0
                dq 1

        times   446 - ($ - $$) db 0
        ; one partition entry covering the image, so partition-table tools see a disk
        db      80h, 0, 2, 0, 0DAh, 1, 32, 0   ; ends at head 1, sector 32: 2 heads x 32 sectors
        dd      1, IMAGE_SECTORS - 1
        times   510 - ($ - $$) db 0
        dw      0AA55h

stage2:
        incbin  "demo-stage2.bin"
        align   512, db 0
STAGE2_SECTORS  equ ($ - stage2) / 512

        times   (IMAGE_SECTORS - 1) * 512 - ($ - $$) db 0
last_sector:
        db      "Hello from the last sector of the disk.", 0
        times   IMAGE_SECTORS * 512 - ($ - $$) db 0
