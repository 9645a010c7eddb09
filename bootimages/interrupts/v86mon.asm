; A virtual-8086 monitor in the manner of EMM386: it boots from the hard disk, keeps
; 576-640 KiB for itself (the BDA memory size says 576 KiB), enters protected mode
; with a TSS whose I/O bitmap allows every port, and irets into V86 mode with IOPL 0.
; From then on every IOPL-sensitive instruction of the V86 code (int n, int3, into,
; pushf, popf, cli, sti, iret, hlt) faults to the monitor's #GP handler, which
; emulates it; IRQs (PICs remapped to 20h/28h) and exceptions 0-7 arrive through the
; IDT and are reflected to the real-mode IVT. The V86 code boots the floppy in
; drive A: (FreeDOS), so DOS, its drivers and the BIOS all run in V86 mode.
; Reports through port E9h.
        cpu 686
        bits 16

MON_SEG     equ 9000h
MON_BASE    equ 90000h
MON_SECTORS equ 8
RING0_STACK equ 9F000h
TSS         equ 98000h                  ; 104 bytes + 8 KiB I/O bitmap + terminator
TSS_LIMIT   equ 104 + 8192
IDT_VECTORS equ 30h

CODE0 equ 08h
DATA0 equ 10h
TSS_SEL equ 18h

        section boot start=0 vstart=7C00h
boot:   jmp 0:.go
.go:    cli
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 7C00h
        mov ax, MON_SEG                 ; the monitor to 9000:0000
        mov es, ax
        xor bx, bx
        mov ax, 0200h | MON_SECTORS
        mov cx, 0002h
        mov dh, 0
        int 13h                         ; DL = our boot drive
        jc .fail
        mov word [413h], 576            ; conventional memory ends where the monitor starts
        in al, 92h                      ; A20
        or al, 2
        and al, 0FEh
        out 92h, al
        in al, 21h                      ; remap the PICs to 20h/28h, keeping the BIOS's masks
        mov bl, al
        in al, 0A1h
        mov bh, al
        mov al, 11h
        out 20h, al
        out 0A0h, al
        mov al, 20h
        out 21h, al
        mov al, 28h
        out 0A1h, al
        mov al, 4
        out 21h, al
        mov al, 2
        out 0A1h, al
        mov al, 1
        out 21h, al
        out 0A1h, al
        mov al, bl
        out 21h, al
        mov al, bh
        out 0A1h, al
        lgdt [gdt_desc]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp dword CODE0:pm_entry
.fail:  mov al, '!'
        out 0E9h, al
        hlt

        align 8
gdt:    dq 0
        dq 00CF9A000000FFFFh            ; 08h code
        dq 00CF92000000FFFFh            ; 10h data
        dw TSS_LIMIT & 0FFFFh, TSS & 0FFFFh ; 18h TSS, available 32-bit
        db (TSS >> 16) & 0FFh, 89h, (TSS_LIMIT >> 16) & 0Fh, TSS >> 24
gdt_end:
gdt_desc:
        dw gdt_end - gdt - 1
        dd gdt
        times 510 - ($ - $$) db 0
        dw 0AA55h

; --- the monitor, at 9000:0000 = 90000h -------------------------------------------
        section monitor start=200h vstart=MON_BASE
        bits 32
pm_entry:
        mov ax, DATA0
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, RING0_STACK
        lgdt [mon_gdt_desc]             ; the boot sector's copy is overwritten by the next boot sector
        mov esi, msg_begin
        call print
        ; IDT: exceptions 0-1Fh and IRQ vectors 20h-2Fh, all interrupt gates into `entry`
        xor ecx, ecx
.idt:   mov eax, [stubs + ecx*4]
        mov [idt + ecx*8], ax
        mov word [idt + ecx*8 + 2], CODE0
        mov word [idt + ecx*8 + 4], 8E00h
        shr eax, 16
        mov [idt + ecx*8 + 6], ax
        inc ecx
        cmp ecx, IDT_VECTORS
        jb .idt
        lidt [idt_desc]
        ; TSS: ring-0 stack, I/O bitmap of zeros (every port allowed), terminator
        mov edi, TSS
        mov ecx, (TSS_LIMIT + 1) / 4
        xor eax, eax
        rep stosd
        mov byte [TSS + TSS_LIMIT], 0FFh
        mov dword [TSS + 4], RING0_STACK
        mov dword [TSS + 8], DATA0
        mov word [TSS + 102], 104       ; I/O map base
        mov ax, TSS_SEL
        ltr ax
        mov esi, msg_v86
        call print
        ; iret into V86 mode at 9000:v86_start, IOPL 0, interrupts on
        push dword 0                    ; GS
        push dword 0                    ; FS
        push dword 0                    ; DS
        push dword 0                    ; ES
        push dword 0                    ; SS
        push dword 7C00h                ; ESP
        push dword 00020202h            ; EFLAGS: VM, IF
        push dword MON_SEG
        push dword v86_start - MON_BASE
        iretd

; --- V86 mode: boot drive A: as a BIOS would ---------------------------------------
        bits 16
v86_start:
        mov ax, 0201h                   ; its boot sector to 0:7C00
        mov cx, 0001h
        xor dx, dx
        xor bx, bx
        mov es, bx
        mov bx, 7C00h
        int 13h                         ; faults to the monitor, which reflects it to the BIOS
        jc .fail
        xor ax, ax
        mov ds, ax
        xor dx, dx                      ; DL = 00h, the drive it came from
        jmp 0:7C00h
.fail:  mov al, '?'
        out 0E9h, al
.stop:  jmp .stop
        bits 32

; --- interrupt entry -------------------------------------------------------------------
%assign v 0
%rep IDT_VECTORS
stub%+v:
%if v = 8 || (v >= 10 && v <= 14) || v = 17
        push dword v
%else
        push dword 0
        push dword v
%endif
        jmp entry
%assign v v+1
%endrep

; frame: pushad (32 bytes), vector, error code, EIP, CS, EFLAGS, ESP, SS, ES, DS, FS, GS
F_VEC   equ 32
F_EC    equ 36
F_EIP   equ 40
F_CS    equ 44
F_FL    equ 48
F_ESP   equ 52
F_SS    equ 56
F_ES    equ 60
VM      equ 20000h
IF_     equ 200h
TF_     equ 100h
OF_     equ 800h
POPF_BITS equ 0FD5h                     ; CF PF AF ZF SF TF IF DF OF

entry:  pushad
        mov ebp, esp
        mov ax, DATA0
        mov ds, ax
        mov es, ax
        test dword [ebp + F_FL], VM
        jz fatal                        ; the monitor itself faulted
        mov eax, [ebp + F_VEC]
        cmp eax, 20h
        jae .irq
        cmp eax, 13
        je gp
        cmp eax, 8
        jb .reflect_exc
        jmp fatal
.irq:   sub eax, 20h - 08h              ; IRQ0-7 -> int 08h-0Fh
        cmp eax, 10h
        jb .reflect_exc
        add eax, 70h - 10h              ; IRQ8-15 -> int 70h-77h
.reflect_exc:
        call reflect
        jmp resume

; #GP from V86 mode: emulate the sensitive instruction at CS:IP
gp:     cmp dword [ebp + F_EC], 0
        jne fatal
        call csip
        xor ecx, ecx                    ; CL = 1 with an operand-size prefix
        mov al, [esi]
        cmp al, 66h
        jne .op
        mov cl, 1
        inc esi
        inc word [ebp + F_EIP]
        mov al, [esi]
.op:    cmp al, 0CDh
        je .int
        cmp al, 0FAh
        je .cli
        cmp al, 0FBh
        je .sti
        cmp al, 9Ch
        je .pushf
        cmp al, 9Dh
        je .popf
        cmp al, 0CFh
        je .iret
        cmp al, 0F4h
        je .hlt
        cmp al, 0CCh
        je .int3
        cmp al, 0CEh
        je .into
        jmp fatal
.int:   movzx eax, byte [esi + 1]
        add word [ebp + F_EIP], 2
        cmp eax, 21h
        jne .int_reflect
        cmp byte [seen_int21], 0
        jne .int_reflect
        mov byte [seen_int21], 1
        push esi
        mov esi, msg_int21
        call print
        pop esi
.int_reflect:
        cmp eax, 15h
        jne .int_go
        cmp byte [ebp + 29], 87h        ; V86 AH
        je move_block
.int_go:
        call reflect
        jmp resume
.int3:  inc word [ebp + F_EIP]
        mov eax, 3
        call reflect
        jmp resume
.into:  inc word [ebp + F_EIP]
        test dword [ebp + F_FL], OF_
        jz resume
        mov eax, 4
        call reflect
        jmp resume
.cli:   and dword [ebp + F_FL], ~IF_
        inc word [ebp + F_EIP]
        jmp resume
.sti:   or dword [ebp + F_FL], IF_
        inc word [ebp + F_EIP]
        jmp resume
.hlt:   inc word [ebp + F_EIP]          ; the IRQ it waits for comes on the way back
        jmp resume
.pushf: inc word [ebp + F_EIP]
        mov eax, [ebp + F_FL]
        and eax, ~(VM | 10000h | 3000h) ; as real mode shows it: no VM, RF, IOPL
        test cl, cl
        jnz .pushfd
        call push16
        jmp resume
.pushfd:
        call push32
        jmp resume
.popf:  inc word [ebp + F_EIP]
        test cl, cl
        jnz .popfd
        call pop16
        jmp .setfl
.popfd: call pop32
.setfl: and eax, POPF_BITS
        and dword [ebp + F_FL], ~POPF_BITS
        or [ebp + F_FL], eax
        jmp resume
.iret:  test cl, cl
        jnz .iretd
        call pop16
        mov [ebp + F_EIP], eax
        call pop16
        mov [ebp + F_CS], eax
        call pop16
        jmp .setfl
.iretd: call pop32
        mov [ebp + F_EIP], eax
        call pop32
        and eax, 0FFFFh
        mov [ebp + F_CS], eax
        call pop32
        jmp .setfl

; int 15h AH=87h, as EMM386 does it: a BIOS would enter protected mode, which V86 code cannot.
; ES:SI = GDT with the source descriptor at 10h and the destination at 18h, CX = words.
move_block:
        movzx esi, word [ebp + F_ES]
        shl esi, 4
        movzx eax, word [ebp + 4]       ; V86 SI
        add esi, eax
        mov eax, [esi + 12h]            ; source base 23:0 (and the access byte above it)
        and eax, 0FFFFFFh
        mov al, al
        movzx edx, byte [esi + 17h]
        shl edx, 24
        or eax, edx
        mov ebx, [esi + 1Ah]            ; destination base
        and ebx, 0FFFFFFh
        movzx edx, byte [esi + 1Fh]
        shl edx, 24
        or ebx, edx
        movzx ecx, word [ebp + 24]      ; V86 CX: words
        mov esi, eax
        mov edi, ebx
        cld
        rep movsw
        mov byte [ebp + 29], 0          ; AH = 0
        and dword [ebp + F_FL], ~1      ; CF = 0
        or dword [ebp + F_FL], 40h      ; ZF = 1
        jmp resume

resume: popad
        add esp, 8
        iretd

; reflect vector EAX through the real-mode IVT: push FLAGS, CS, IP on the V86 stack
reflect:
        push eax
        mov eax, [ebp + F_FL]
        and eax, ~(VM | 10000h | 3000h)
        call push16
        mov eax, [ebp + F_CS]
        call push16
        mov eax, [ebp + F_EIP]
        call push16
        pop eax
        mov edx, [eax*4]                ; IVT entry
        movzx eax, dx
        mov [ebp + F_EIP], eax
        shr edx, 16
        mov [ebp + F_CS], edx
        and dword [ebp + F_FL], ~(IF_ | TF_)
        ret

csip:   movzx esi, word [ebp + F_CS]    ; ESI = linear CS:IP
        shl esi, 4
        movzx eax, word [ebp + F_EIP]
        add esi, eax
        ret

v86_sp: movzx edi, word [ebp + F_SS]    ; EDI = linear SS:SP
        shl edi, 4
        movzx edx, word [ebp + F_ESP]
        add edi, edx
        ret

push16: sub word [ebp + F_ESP], 2
        call v86_sp
        mov [edi], ax
        ret
push32: sub word [ebp + F_ESP], 4
        call v86_sp
        mov [edi], eax
        ret
pop16:  call v86_sp
        movzx eax, word [edi]
        add word [ebp + F_ESP], 2
        ret
pop32:  call v86_sp
        mov eax, [edi]
        add word [ebp + F_ESP], 4
        ret

fatal:  mov esi, msg_fatal
        call print
        mov eax, [ebp + F_VEC]
        call hex32
        mov esi, msg_ec
        call print
        mov eax, [ebp + F_EC]
        call hex32
        mov esi, msg_at
        call print
        mov eax, [ebp + F_CS]
        call hex32
        mov al, ':'
        out 0E9h, al
        mov eax, [ebp + F_EIP]
        call hex32
        mov al, 10
        out 0E9h, al
.halt:  cli
        hlt
        jmp .halt

print:  push eax
.next:  lodsb
        test al, al
        jz .done
        out 0E9h, al
        jmp .next
.done:  pop eax
        ret
hex32:  push ecx
        mov ecx, 8
.digit: rol eax, 4
        push eax
        and al, 0Fh
        add al, '0'
        cmp al, '9'
        jbe .out
        add al, 7
.out:   out 0E9h, al
        pop eax
        loop .digit
        pop ecx
        ret

stubs:
%assign v 0
%rep IDT_VECTORS
        dd stub%+v
%assign v v+1
%endrep
idt_desc:
        dw IDT_VECTORS * 8 - 1
        dd idt
        align 8
mon_gdt:
        dq 0
        dq 00CF9A000000FFFFh            ; 08h code
        dq 00CF92000000FFFFh            ; 10h data
        dw TSS_LIMIT & 0FFFFh, TSS & 0FFFFh ; 18h TSS, available 32-bit
        db (TSS >> 16) & 0FFh, 89h, (TSS_LIMIT >> 16) & 0Fh, TSS >> 24
mon_gdt_desc:
        dw mon_gdt_desc - mon_gdt - 1
        dd mon_gdt
seen_int21: db 0
msg_begin:  db "BEGIN v86mon", 10, 0
msg_v86:    db "entering V86 mode, IOPL 0", 10, 0
msg_int21:  db "DOS is running in V86 mode (first int 21h reflected)", 10, 0
msg_fatal:  db "monitor: unexpected vector ", 0
msg_ec:     db " error code ", 0
msg_at:     db " at ", 0
        align 8
idt:    times IDT_VECTORS * 8 db 0
        times MON_SECTORS * 512 - ($ - $$) db 0   ; (negative, an error, if the monitor outgrew it)
