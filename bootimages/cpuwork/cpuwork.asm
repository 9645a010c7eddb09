; cpuwork: a CPU-bound workload with no BIOS call inside, for proving the run loop
; and for timing guest code against QEMU (bench cpu).
;
; The boot sector loads the rest of the program, enters 32-bit flat protected mode
; (an IDT of our own: IRQ0 at vector 8, where the BIOS left the master PIC, counts
; ticks), then, with interrupts off (IRQS=0) or on (IRQS=1):
;   1. decodes an LZ77-style token stream drawn from a xorshift32 generator into
;      OUT_KB KiB at 4 MiB: literal runs, and matches copied with `rep movsb` from
;      up to 4 KiB back (overlapping copies repeat bytes, as LZ decoders rely on);
;   2. builds the CRC-32 table and takes the CRC-32 of the whole output.
; Reports on port E9h: `T CPU.1 SUM=<crc> BYTES=<output size> TICKS=<IRQ0 seen
; during the work>`, then `END cpuwork`, and `cpuwork NAME: done` on the screen.
; Then idles with interrupts on. The checksum depends on nothing but the program.

%ifndef IRQS
%define IRQS 0
%endif
%ifndef OUT_KB
%define OUT_KB 4096
%endif
%ifndef NAME
%define NAME "cpuwork"
%endif

        cpu 686
        bits 16
        org 7C00h

IDT       equ 1000h                     ; 256 gates, up to 1800h
OUT_BASE  equ 400000h
OUT_BYTES equ OUT_KB * 1024
CRC_TABLE equ 2000h                     ; 1 KiB
STACK_TOP equ 90000h
PROGRAM_SECTORS equ (program_end - $$ + 511) / 512 - 1

start:
        jmp 0:.canonical
.canonical:
        cli
        xor ax, ax
        mov ss, ax
        mov sp, 7C00h
        mov ds, ax
        mov es, ax
        sti
        cld
        mov [dap.count], word PROGRAM_SECTORS
        mov si, dap
        mov ah, 42h                     ; the rest of the program to 7E00h
        int 13h
        jc .failed
        mov si, hello
.hello: lodsb
        test al, al
        jz .go
        out 0E9h, al
        jmp .hello
.go:    jmp protected
.failed:
        mov al, '!'
        out 0E9h, al
.halt:  hlt
        jmp .halt

dap:    db 10h, 0
.count: dw 0
        dw 7E00h, 0
        dq 1
hello:  db "BEGIN cpuwork ", NAME, 10, 0

        times 510 - ($ - $$) db 0
        dw 0AA55h

gdt:    dq 0
        dq 00CF9A000000FFFFh            ; 08h: code, flat, 32-bit
        dq 00CF92000000FFFFh            ; 10h: data, flat, 32-bit
gdtr:   dw gdtr - gdt - 1
        dd gdt
idtr:   dw 256 * 8 - 1
        dd IDT

protected:
        cli
        lgdt [gdtr]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp 08h:pm

        bits 32
pm:     mov ax, 10h
        mov ds, ax
        mov es, ax
        mov fs, ax
        mov gs, ax
        mov ss, ax
        mov esp, STACK_TOP
        ; the IDT: exceptions stop the program, IRQs are acknowledged, IRQ0 counted
        xor ecx, ecx
.gate:  mov eax, fault
        cmp ecx, 8
        jne .not_timer
        mov eax, irq0
        jmp .set
.not_timer:
        cmp ecx, 9
        jb .set
        cmp ecx, 0Fh
        ja .slave
        mov eax, irq_master
        jmp .set
.slave: cmp ecx, 70h
        jb .set
        cmp ecx, 77h
        ja .set
        mov eax, irq_slave
.set:   mov [IDT + ecx*8], ax
        mov word [IDT + ecx*8 + 2], 08h
        mov word [IDT + ecx*8 + 4], 8E00h   ; present, DPL 0, 32-bit interrupt gate
        shr eax, 16
        mov [IDT + ecx*8 + 6], ax
        inc ecx
        cmp ecx, 256
        jb .gate
        lidt [idtr]
        mov dword [ticks], 0
%if IRQS
        sti
%endif

        ; 1. decode
        mov edi, OUT_BASE
        mov ebx, 2463534242             ; xorshift32 state
.token: mov eax, edi
        sub eax, OUT_BASE
        cmp eax, OUT_BYTES
        jae .decoded
        call random
        test eax, eax
        jns .literal
        mov ecx, edi
        sub ecx, OUT_BASE
        jz .literal                     ; nothing to refer back to yet
        mov edx, eax
        shr edx, 8
        and edx, 0FFFh
        inc edx                         ; distance 1..4096
        cmp edx, ecx
        jbe .distance
        mov edx, ecx
.distance:
        mov ecx, eax
        and ecx, 3Fh
        add ecx, 3                      ; length 3..66
        call clip
        mov esi, edi
        sub esi, edx
        rep movsb
        jmp .token
.literal:
        mov ecx, eax
        and ecx, 7
        inc ecx                         ; 1..8 literal bytes
        call clip
.byte:  call random
        mov [edi], al
        inc edi
        dec ecx
        jnz .byte
        jmp .token
.decoded:

        ; 2. CRC-32 (reflected, polynomial EDB88320h) of the output
        xor ecx, ecx
.table: mov eax, ecx
        mov edx, 8
.bit:   shr eax, 1
        jnc .nox
        xor eax, 0EDB88320h
.nox:   dec edx
        jnz .bit
        mov [CRC_TABLE + ecx*4], eax
        inc ecx
        cmp ecx, 256
        jb .table
        mov esi, OUT_BASE
        mov ecx, OUT_BYTES
        mov eax, 0FFFFFFFFh
        xor edx, edx
.crc:   mov dl, al
        xor dl, [esi]
        shr eax, 8
        xor eax, [CRC_TABLE + edx*4]
        inc esi
        dec ecx
        jnz .crc
        not eax
        mov [sum], eax

        cli
        mov eax, [ticks]
        mov [work_ticks], eax
        mov esi, line1
        call puts
        mov eax, [sum]
        call hex32
        mov esi, line2
        call puts
        mov eax, OUT_BYTES
        call hex32
        mov esi, line3
        call puts
        mov eax, [work_ticks]
        call hex32
        mov esi, line4
        call puts
        mov esi, screen                 ; row 0 of the text screen
        mov edi, 0B8000h
.screen:
        lodsb
        test al, al
        jz .idle
        mov ah, 07h
        stosw
        jmp .screen
.idle:  sti
.halt:  hlt
        jmp .halt

; clip: ECX = min(ECX, bytes left to produce at EDI)
clip:   push eax
        mov eax, OUT_BASE + OUT_BYTES
        sub eax, edi
        cmp ecx, eax
        jbe .ok
        mov ecx, eax
.ok:    pop eax
        ret

; random: EAX = next xorshift32 value of EBX (EBX advances)
random: mov eax, ebx
        shl eax, 13
        xor ebx, eax
        mov eax, ebx
        shr eax, 17
        xor ebx, eax
        mov eax, ebx
        shl eax, 5
        xor ebx, eax
        mov eax, ebx
        ret

puts:   lodsb
        test al, al
        jz .done
        out 0E9h, al
        jmp puts
.done:  ret

hex32:  mov ecx, 8
.digit: rol eax, 4
        push eax
        and al, 0Fh
        add al, '0'
        cmp al, '9'
        jbe .out
        add al, 'A' - '9' - 1
.out:   out 0E9h, al
        pop eax
        dec ecx
        jnz .digit
        ret

irq0:   inc dword [ticks]
irq_master:
        push eax
        mov al, 20h
        out 20h, al
        pop eax
        iretd
irq_slave:
        push eax
        mov al, 20h
        out 0A0h, al
        out 20h, al
        pop eax
        iretd
fault:  mov al, 'F'
        out 0E9h, al
        cli
.stop:  hlt
        jmp .stop

ticks:      dd 0
work_ticks: dd 0
sum:        dd 0
line1:  db "T CPU.1 SUM=", 0
line2:  db " BYTES=", 0
line3:  db " TICKS=", 0
line4:  db 10, "END cpuwork", 10, 0
screen: db "cpuwork ", NAME, ": done", 0
program_end:
