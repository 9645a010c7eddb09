; nbdboot BIOS ROM: the 64 KiB image mapped at F000:0000.
;
; Services are written in Python; the ROM holds what must be real guest code:
;  - one `int n; iret` stub per vector at F000:4n. The machine traps the `int`
;    executed at a stub address (and only there), serves the call, and the
;    `iret` returns to the caller with the FLAGS word the service left in the
;    caller's frame. Because the stub is ordinary code, a guest that hooks a
;    vector can chain to the old one with pushf + far call.
;  - the IRQ paths that guests hook or expect to run: the timer (BDA tick via a
;    trap, then int 1Ch through the IVT, then EOI) and the keyboard.
;  - fixed-address tables boot code reads (DPT, config table, FDPT, date, model).
;
; Build: nasm -f bin -o firmware/bios.bin firmware/bios.asm
; nbdboot/machine/rom.py repeats the offsets the `times` lines below place the
; entry points at; a `; rom.IRQ0 = 0x0400` comment names its constant, and
; tests/test_machine_firmware.py checks both against the built image.

        cpu     386
        bits    16
        org     0

; --- F000:0000 vector stubs: int n; iret; nop ---------------------------------
stubs:
%assign n 0
%rep 256
        int     n
        iret
        nop
%assign n n+1
%endrep

; --- F000:0400 IRQ handlers ----------------------------------------------------
        times   0x400 - ($ - $$) db 0
irq0_handler:                   ; rom.IRQ0 = 0x0400, IVT[08h]
        int     08h             ; trap: BDA tick, midnight flag, motor timeout
        int     1Ch             ; user timer hook, through the IVT
        push    ax
        mov     al, 20h
        out     20h, al         ; EOI to the master PIC
        pop     ax
        iret

        times   0x410 - ($ - $$) db 0
irq1_handler:                   ; rom.IRQ1 = 0x0410, IVT[09h]
        jmp     irq1_body

        times   0x420 - ($ - $$) db 0
irq_master_default:             ; rom.IRQ_MASTER_DEFAULT = 0x0420, IRQ2-7
        push    ax
        mov     al, 20h
        out     20h, al
        pop     ax
        iret

        times   0x430 - ($ - $$) db 0
irq_slave_default:              ; rom.IRQ_SLAVE_DEFAULT = 0x0430, IRQ8-15
        push    ax
        mov     al, 20h
        out     0A0h, al
        out     20h, al
        pop     ax
        iret

        times   0x440 - ($ - $$) db 0
boot_failed:                    ; rom.BOOT_FAILED = 0x0440, left for a stopped machine
        cli
        hlt
        jmp     boot_failed

        times   0x0450 - ($ - $$) db 0
irq12_handler:                  ; rom.IRQ12 = 0x0450, IVT[74h]: the PS/2 mouse
        pusha
        push    ds
        push    es
        int     74h             ; trap: takes the byte from port 60h; when it completes a packet
                                ; and int 15h C2h enabled a handler: CX=1, AX/BX/DX = status/X/Y
        jcxz    .eoi
        push    ax              ; status
        push    bx              ; X
        push    dx              ; Y
        xor     cx, cx
        push    cx              ; Z
        call    far [cs:mouse_handler]
        add     sp, 8
.eoi:   mov     al, 20h
        out     0A0h, al
        out     20h, al
        pop     es
        pop     ds
        popa
        iret

        times   0x0480 - ($ - $$) db 0
irq1_body:                      ; rom.IRQ1_BODY = 0x0480: as SeaBIOS's handle_09
        push    ax
        in      al, 64h
        test    al, 20h         ; a mouse byte is IRQ12's
        jnz     .eoi
        in      al, 60h
        mov     ah, 4Fh         ; keyboard intercept: a hook may change AL, or clear CF to drop the key
        stc
        int     15h
        jnc     .eoi
        int     09h             ; rom.IRQ1_TRAP = 0x0490, trap: the scan code in AL: shift flags at
                                ; 40:17h/18h/96h, a key's word into the BDA ring
.eoi:   mov     al, 20h
        out     20h, al
        pop     ax
        iret

        times   0x04F0 - ($ - $$) db 0
mouse_handler:                  ; rom.MOUSE_HANDLER = 0x04F0: the far pointer int 15h C207h sets
        dd      0

; --- F000:0500 video parameter area (int 1Dh) kept empty ----------------------

; --- F000:B000-DE00 the VGA ROM fonts int 10h 1130h hands out (IBM glyphs, as
; SeaVGABIOS has them: firmware/vgafont*.bin, scripts/extract-vga-fonts) -------
        times   0xB800 - ($ - $$) db 0
font8x8_full:                   ; rom.FONT_8X8_FULL; int 1Fh points at its second half
        incbin  "vgafont8.bin"
font8x16:                       ; rom.FONT_8X16 = 0xC000
        incbin  "vgafont16.bin"
font8x14:                       ; rom.FONT_8X14 = 0xD000
        incbin  "vgafont14.bin"

; --- F000:E05B POST entry: hand over to int 19h through the IVT ---------------
        times   0xE05B - ($ - $$) db 0
post_entry:
        int     0FEh            ; trap: POST just ran, or a guest jumped to the reset vector (a reset)
        cli
        xor     ax, ax
        mov     ss, ax
        mov     sp, 7C00h
        mov     ds, ax
        mov     es, ax
        sti
        int     19h
        jmp     boot_failed

; --- F000:E401 fixed disk parameter table (int 41h/46h), filled by POST -------
        times   0xE401 - ($ - $$) db 0
fdpt:
        times   16 db 0
        times   16 db 0

; --- F000:E6F5 int 15h C0h system configuration table -------------------------
        times   0xE6F5 - ($ - $$) db 0
config_table:
        dw      8               ; bytes that follow
        db      0FCh            ; model: AT
        db      0               ; submodel
        db      0               ; BIOS revision
        db      01110100b       ; feature 1: 2nd PIC, RTC, int 15h 4Fh, EBDA
        db      01000000b       ; feature 2: int 16h 09h
        db      0, 0, 0

; --- F000:EFC7 int 1Eh diskette parameter table (1.44M values, as SeaBIOS) ----
        times   0xEFC7 - ($ - $$) db 0
diskette_params:
        db      0AFh            ; step rate, head unload
        db      02h             ; head load, DMA
        db      25h             ; motor-off delay in ticks
        db      02h             ; 512 bytes per sector
        db      18              ; sectors per track
        db      1Bh             ; gap length
        db      0FFh            ; data length
        db      6Ch             ; format gap
        db      0F6h            ; format fill byte
        db      0Fh             ; head settle ms
        db      08h             ; motor start, 1/8 s
        db      79              ; max track (SeaBIOS diskette_param_table2 tail)
        db      0               ; data rate
        db      4               ; drive type

; --- F000:FA6E 8x8 font, first 128 glyphs (int 43h in CGA modes) --------------
        times   0xFA6E - ($ - $$) db 0
font8x8:
        incbin  "vgafont8.bin", 0, 1024

; --- F000:FFF0 reset vector, date, model --------------------------------------
        times   0xFFF0 - ($ - $$) db 0
reset_vector:
        jmp     0F000h:post_entry
        db      "11/24/26"      ; F000:FFF5 BIOS date
        db      0
        db      0FCh            ; F000:FFFE model byte: AT
        db      0
