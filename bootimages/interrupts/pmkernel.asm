; A small protected-mode kernel exercising interrupt delivery as the SDM defines it.
; Boot sector + kernel in one flat image loaded at 0:7C00 (the boot sector reads the
; rest of track 0 behind itself). Reports through port E9h; every line must be the
; same under nbdboot and QEMU+SeaBIOS.
;
; Ring 0 sets up a GDT, an IDT (exception stubs, IRQ0/IRQ1 interrupt gates, a DPL-3
; trap gate for system calls, a task gate), a TSS, remaps the PICs to 20h/28h and
; turns on paging. Ring 3 then takes timer and keyboard IRQs (stack switch through
; the TSS), makes system calls, faults on a not-present page and on a read-only page
; (the handlers map the page and return: the instruction runs again), loads a
; ring-0 selector (#GP with the selector), calls a DPL-0 gate (#GP with the IDT bit),
; divides by zero. Ring 0 finally checks CR0.WP, #NP, a vector beyond the IDT limit,
; and a task switch through a task gate and back with iret (NT).
        cpu 686
        bits 16
        org 7C00h

SECTORS     equ 17                      ; sectors 2-18 of track 0
KSTACK      equ 70000h                  ; ring-0 stack (TSS ESP0)
USTACK      equ 60000h                  ; ring-3 stack
BSTACK      equ 68000h                  ; task B's stack
PAGEDIR     equ 20000h
PT0         equ 21000h                  ; maps 0-4 MiB
PT1         equ 22000h                  ; maps 4-8 MiB, installed by the #PF handler
RO_USER     equ 300000h                 ; read-only user page
RO_KERNEL   equ 301000h                 ; read-only page for the CR0.WP check
ABSENT      equ 400000h                 ; under a not-present page-directory entry

CODE0 equ 08h
DATA0 equ 10h
CODE3 equ 18h | 3
DATA3 equ 20h | 3
TSS_A equ 28h
TSS_B equ 30h
ABSENT_SEG equ 38h

boot:   jmp 0:.go
.go:    cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 7C00h
        mov ax, 0200h | SECTORS         ; read sectors 2.. of cylinder 0, head 0 to 7E00h
        mov cx, 0002h
        xor dh, dh
        mov bx, 7E00h
        int 13h
        jc .fail
        jmp kernel16
.fail:  mov al, '!'
        out 0E9h, al
        hlt
        times 510 - ($ - $$) db 0
        dw 0AA55h

; --- real mode: PICs, A20, GDT, into protected mode ---------------------------
kernel16:
        in al, 92h                      ; fast A20: odd megabytes are used below
        or al, 2
        and al, 0FEh
        out 92h, al
        mov al, 11h                     ; ICW1: edge, cascade, ICW4
        out 20h, al
        out 0A0h, al
        mov al, 20h                     ; ICW2: IRQ0-7 at 20h, IRQ8-15 at 28h
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
        mov al, 0FCh                    ; only IRQ0 and IRQ1
        out 21h, al
        mov al, 0FFh
        out 0A1h, al
        lgdt [gdt_desc]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp CODE0:pm32

        bits 32
pm32:   mov ax, DATA0
        mov ds, ax
        mov es, ax
        mov fs, ax
        mov gs, ax
        mov ss, ax
        mov esp, KSTACK
        mov esi, msg_begin
        call print

        ; IDT: exception stubs 0-31, IRQ0/1, system call 80h, task gate 81h, DPL-0 gate 82h
        xor ecx, ecx
.exc:   mov eax, [exc_stubs + ecx*4]
        mov dl, 8Eh                     ; interrupt gate, DPL 0
        cmp ecx, 3
        je .user
        cmp ecx, 4
        jne .set
.user:  mov dl, 0EEh                    ; int3/into may come from ring 3
.set:   call set_gate
        inc ecx
        cmp ecx, 32
        jb .exc
        mov ecx, 20h
        mov eax, irq0
        mov dl, 8Eh
        call set_gate
        mov ecx, 21h
        mov eax, irq1
        call set_gate
        mov ecx, 80h
        mov eax, syscall
        mov dl, 0EFh                    ; trap gate, DPL 3
        call set_gate
        mov ecx, 82h
        mov eax, syscall
        mov dl, 8Fh                     ; trap gate, DPL 0: int 82h from ring 3 faults
        call set_gate
        mov dword [idt + 81h*8], TSS_B << 16     ; task gate 81h -> task B
        mov dword [idt + 81h*8 + 4], 8500h
        lidt [idt_desc]

        ; TSS descriptors, then the task register
        mov eax, tss_a
        mov ebx, gdt + TSS_A
        call set_tss_desc
        mov eax, tss_b
        mov ebx, gdt + TSS_B
        call set_tss_desc
        mov dword [tss_a + 4], KSTACK   ; ESP0
        mov dword [tss_a + 8], DATA0    ; SS0
        mov ax, TSS_A
        ltr ax

        ; page tables: 0-4 MiB identity, user and writable, two pages read-only;
        ; the second 4 MiB is prepared in PT1 but its directory entry is absent
        mov edi, PAGEDIR
        mov ecx, 1024
        xor eax, eax
        rep stosd
        mov dword [PAGEDIR], PT0 | 7
        mov edi, PT0
        mov eax, 7
        mov ecx, 2048                   ; PT0 and PT1 are adjacent
.pte:   stosd
        add eax, 1000h
        loop .pte
        and dword [PT0 + (RO_USER >> 12) * 4], ~2
        and dword [PT0 + (RO_KERNEL >> 12) * 4], ~2
        mov eax, PAGEDIR
        mov cr3, eax
        mov [tss_a + 1Ch], eax          ; a task switch loads CR3 from the TSS
        mov [tss_b + 1Ch], eax
        mov eax, cr0
        or eax, 80000000h
        mov cr0, eax
        mov esi, msg_paging
        call print

        ; task B: ring 0, its own stack
        mov dword [tss_b + 20h], task_b
        mov dword [tss_b + 24h], 2
        mov dword [tss_b + 38h], BSTACK
        mov dword [tss_b + 48h], DATA0  ; ES
        mov dword [tss_b + 4Ch], CODE0  ; CS
        mov dword [tss_b + 50h], DATA0  ; SS
        mov dword [tss_b + 54h], DATA0  ; DS
        mov dword [tss_b + 58h], DATA0  ; FS
        mov dword [tss_b + 5Ch], DATA0  ; GS

        ; into ring 3 with interrupts on and IOPL 3 (port E9h from ring 3)
        push DATA3
        push USTACK
        push 3202h
        push CODE3
        push user_main
        iret

; --- ring 3 -----------------------------------------------------------------
user_main:
        mov ax, DATA3
        mov ds, ax
        mov es, ax
        mov esi, msg_ring3
        call print
        mov ax, cs
        call hex16
        call newline

        mov eax, 1234h                  ; system call through the DPL-3 trap gate
        int 80h
        mov esi, msg_sysret
        call print
        call hex32
        call newline

        int3                            ; DPL-3 gates: the handler returns after them
        mov al, 7Fh
        add al, 1
        into

.tick:  xor eax, eax                    ; wait for 3 timer ticks, IRQ0 taken in ring 3 too
        int 80h
        cmp dword [ticks], 3
        jb .tick
.user_tick:                             ; spin in ring 3: the next IRQ0 switches stacks
        cmp dword [user_ticks], 0
        je .user_tick
        mov esi, msg_ticks
        call print

        mov esi, msg_waitkey
        call print
.key:   xor eax, eax
        int 80h
        cmp dword [key], 0
        je .key
        mov esi, msg_key
        call print
        mov eax, [key]
        call hex16
        call newline

pf_read:
        mov eax, [ABSENT]               ; #PF, not present: the handler maps it, the read runs again
        mov esi, msg_read_ok
        call print
pf_write:
        mov dword [RO_USER], 55h        ; #PF, read-only: the handler makes it writable
        mov eax, [RO_USER]
        mov esi, msg_write_ok
        call print
        call hex32
        call newline

        mov ax, DATA0                   ; a ring-0 data segment from ring 3: #GP(10h)
gp_sel: mov ds, ax
gp_sel_end:
gp_gate:
        int 82h                         ; a DPL-0 gate from ring 3: #GP(82h*8+2)
gp_gate_end:
        xor edx, edx
        mov eax, 100
        xor ecx, ecx
de_at:  div ecx                         ; #DE: the handler sets ECX=2, the div runs again
        mov esi, msg_div
        call print
        call hex32
        call newline

        mov eax, 2                      ; ring-0 checks
        int 80h
        mov esi, msg_end
        call print
        mov eax, 9
        int 80h

; --- ring 0: system calls ------------------------------------------------------
syscall:
        cmp eax, 0
        je .idle
        cmp eax, 2
        je kernel_checks
        cmp eax, 9
        jne .hello
        cli                             ; 9: the end
.halt:  hlt
        jmp .halt
.idle:  sti
        hlt                             ; wait for an IRQ (a trap gate left IF as it was)
        iret
.hello: push eax
        mov esi, msg_syscall
        call print
        call hex32
        mov esi, msg_from
        call print
        mov ax, [esp + 8]               ; CS of the caller
        call hex16
        mov esi, msg_ss
        call print
        mov ax, [esp + 20]              ; SS of the caller
        call hex16
        mov esi, msg_now
        call print
        mov ax, cs
        call hex16
        mov al, ':'
        out 0E9h, al
        mov ax, ss
        call hex16
        call newline
        pop eax
        inc eax
        iret

kernel_checks:
        mov eax, cr0                    ; supervisor write to a read-only page with WP=1
        or eax, 10000h
        mov cr0, eax
wp_write:
        mov dword [RO_KERNEL], 66h
        mov esi, msg_wp_ok
        call print
        mov ax, ABSENT_SEG              ; #NP(38h)
np_sel: mov es, ax
np_sel_end:
        mov ax, DATA0
        mov es, ax
idt_limit:
        int 0F0h                        ; beyond the IDT limit: #GP(0F0h*8+2)
idt_limit_end:
        mov esi, msg_task
        call print
        int 81h                         ; task gate: switch to task B, which irets back
        mov esi, msg_back
        call print
        str ax
        call hex16
        pushfd
        pop eax
        mov esi, msg_nt
        call print
        shr eax, 14
        and eax, 1
        call hex16
        call newline
        iret

task_b: mov esi, msg_in_b
        call print
        str ax
        call hex16
        mov esi, msg_link
        call print
        mov ax, [tss_b]
        call hex16
        pushfd
        pop eax
        mov esi, msg_nt
        call print
        shr eax, 14
        and eax, 1
        call hex16
        call newline
        iret                            ; NT=1: back to task A
        jmp task_b                      ; a later switch into B resumes here

; --- IRQs ---------------------------------------------------------------------
irq0:   push eax
        inc dword [ticks]
        test byte [esp + 8], 3          ; CS of the interrupted code
        jz .k
        inc dword [user_ticks]
.k:     mov al, 20h
        out 20h, al
        pop eax
        iret

irq1:   push eax
        in al, 60h
        cmp dword [key], 0
        jne .done
        movzx eax, al
        mov [key], eax
.done:  mov al, 20h
        out 20h, al
        pop eax
        iret

; --- exceptions -----------------------------------------------------------------
%assign v 0
%rep 32
exc%+v:
%if v = 8 || (v >= 10 && v <= 14) || v = 17
        push v
%else
        push 0
        push v
%endif
        jmp exc_common
%assign v v+1
%endrep

exc_common:
        pushad                          ; [esp+32] vector, +36 error code, +40 EIP, +44 CS
        mov ebp, esp
        mov esi, msg_exc
        call print
        mov eax, [ebp + 32]
        call hex16
        mov esi, msg_ec
        call print
        mov eax, [ebp + 36]
        call hex32
        mov esi, msg_eip
        call print
        mov eax, [ebp + 40]
        call hex32
        mov esi, msg_cs
        call print
        mov ax, [ebp + 44]
        call hex16
        mov eax, [ebp + 32]
        cmp eax, 14
        jne .not_pf
        mov esi, msg_cr2
        call print
        mov eax, cr2
        call hex32
        cmp eax, ABSENT
        jne .ro
        mov dword [PAGEDIR + 4], PT1 | 7  ; map the second 4 MiB and retry
        mov eax, cr3
        mov cr3, eax
        jmp .ret
.ro:    and eax, ~0FFFh
        shr eax, 12
        or dword [PT0 + eax*4], 2       ; writable, retry
        mov eax, cr2
        invlpg [eax]
        jmp .ret
.not_pf:
        cmp eax, 0
        jne .not_de
        mov dword [ebp + 24], 2         ; saved ECX: the restarted div divides by 2
        jmp .ret
.not_de:
        cmp eax, 3
        je .ret
        cmp eax, 4
        je .ret
        mov esi, fixups                 ; skip a faulting instruction we planted
        mov edx, [ebp + 40]
.find:  lodsd
        test eax, eax
        jz .unexpected
        cmp eax, edx
        lodsd
        jne .find
        mov [ebp + 40], eax
        jmp .ret
.unexpected:
        mov esi, msg_unexpected
        call print
        cli
        hlt
.ret:   call newline
        popad
        add esp, 8
        iret

fixups: dd gp_sel, gp_sel_end, gp_gate, gp_gate_end, np_sel, np_sel_end, idt_limit, idt_limit_end, 0

; --- helpers (ring 0 and 3: IOPL 3) --------------------------------------------
print:  push eax
.next:  lodsb
        test al, al
        jz .done
        out 0E9h, al
        jmp .next
.done:  pop eax
        ret
newline:
        push eax
        mov al, 10
        out 0E9h, al
        pop eax
        ret
hex32:  push eax
        shr eax, 16
        call hex16
        pop eax
hex16:  push eax
        push ecx
        mov ecx, 4
.digit: rol ax, 4
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
        pop eax
        ret

set_gate:                               ; ECX vector, EAX offset, DL access byte
        mov word [idt + ecx*8], ax
        mov word [idt + ecx*8 + 2], CODE0
        mov byte [idt + ecx*8 + 4], 0
        mov byte [idt + ecx*8 + 5], dl
        shr eax, 16
        mov word [idt + ecx*8 + 6], ax
        ret

set_tss_desc:                           ; EAX base, EBX descriptor address
        mov word [ebx], 67h
        mov [ebx + 2], ax
        shr eax, 16
        mov [ebx + 4], al
        mov byte [ebx + 5], 89h         ; available 32-bit TSS
        mov byte [ebx + 6], 0
        mov [ebx + 7], ah
        ret

; --- data -----------------------------------------------------------------------
        align 8
gdt:    dq 0
        dq 00CF9A000000FFFFh            ; 08h ring-0 code
        dq 00CF92000000FFFFh            ; 10h ring-0 data
        dq 00CFFA000000FFFFh            ; 18h ring-3 code
        dq 00CFF2000000FFFFh            ; 20h ring-3 data
        dq 0                            ; 28h TSS A
        dq 0                            ; 30h TSS B
        dq 00CF12000000FFFFh            ; 38h ring-0 data, not present
gdt_end:
gdt_desc:
        dw gdt_end - gdt - 1
        dd gdt
idt_desc:
        dw 83h * 8 - 1                  ; vectors 0-82h
        dd idt

exc_stubs:
%assign v 0
%rep 32
        dd exc%+v
%assign v v+1
%endrep

ticks:      dd 0
user_ticks: dd 0
key:        dd 0

msg_begin:  db "BEGIN pmkernel", 10, 0
msg_paging: db "paging on", 10, 0
msg_ring3:  db "ring 3, CS=", 0
msg_syscall: db "syscall EAX=", 0
msg_from:   db " from CS=", 0
msg_ss:     db " SS=", 0
msg_now:    db " handler CS:SS=", 0
msg_sysret: db "syscall returned ", 0
msg_ticks:  db "timer IRQs taken in rings 0 and 3", 10, 0
msg_waitkey: db "WAITKEY", 10, 0
msg_key:    db "keyboard IRQ scancode ", 0
msg_read_ok: db "read after #PF ok", 10, 0
msg_write_ok: db "write after #PF ok, value ", 0
msg_div:    db "100/2 after #DE = ", 0
msg_wp_ok:  db "supervisor write after #PF ok", 10, 0
msg_task:   db "int 81h: task gate", 10, 0
msg_in_b:   db "task B, TR=", 0
msg_link:   db " back link=", 0
msg_nt:     db " NT=", 0
msg_back:   db "back in task A, TR=", 0
msg_exc:    db "exception ", 0
msg_ec:     db " error code ", 0
msg_eip:    db " EIP ", 0
msg_cs:     db " CS ", 0
msg_cr2:    db " CR2 ", 0
msg_unexpected: db " unexpected", 10, 0
msg_end:    db "END pmkernel", 10, 0

        align 16
tss_a:  times 68h db 0
tss_b:  times 68h db 0
        align 8
idt:    times 83h * 8 db 0
kernel_end:
%if kernel_end - boot > 512 * (SECTORS + 1)
%error kernel too large
%endif
        times 512 * (SECTORS + 1) - ($ - $$) db 0
