; A Multiboot (version 1) kernel of our own, loaded by GRUB's `multiboot` command: a flat binary whose header
; carries its load addresses (flag bit 16), so no ELF is needed. In 32-bit protected mode it checks the magic
; GRUB hands over in EAX, reads mem_lower/mem_upper from the Multiboot information, and writes one line to the
; text screen (B8000h) and to port E9h, then idles, e.g. "NBDBOOT-MB multiboot ok lower=0000027F upper=0003FB80".
        bits 32
        org 100000h
MB_MAGIC   equ 1BADB002h
MB_FLAGS   equ (1 << 1) | (1 << 16)            ; memory info wanted; address fields valid
header:
        dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
        dd header, 100000h, load_end, bss_end, entry
entry:
        mov esp, stack_top
        mov edi, line_magic
        cmp eax, 2BADB002h
        je .magic_ok
        mov dword [edi], "BAD!"
.magic_ok:
        mov eax, [ebx + 4]                      ; mem_lower (KiB)
        mov edi, line_lower
        call hex32
        mov eax, [ebx + 8]                      ; mem_upper (KiB)
        mov edi, line_upper
        call hex32
        ; clear the screen, then the line on row 0 and E9h
        mov edi, 0B8000h
        mov ecx, 80 * 25
        mov ax, 0720h
        rep stosw
        mov esi, line
        mov edi, 0B8000h
.put:   lodsb
        test al, al
        jz .done
        out 0E9h, al
        cmp al, 10
        je .put
        mov ah, 07h
        stosw
        jmp .put
.done:  ; Idle for good. Not `cli; hlt`: a PC ends the run there ("halted"), maybe before its screen is read.
.idle:  pause
        jmp .idle

; EAX -> 8 hex digits at EDI
hex32:  mov ecx, 8
.digit: rol eax, 4
        mov edx, eax
        and edx, 0Fh
        mov dl, [hexdigits + edx]
        mov [edi], dl
        inc edi
        loop .digit
        ret

hexdigits: db "0123456789ABCDEF"
line:       db "NBDBOOT-MB multiboot "
line_magic: db "ok   lower="
line_lower: db "00000000 upper="
line_upper: db "00000000", 10, 0
load_end:
        align 16
stack:  times 1024 db 0
stack_top:
bss_end:
