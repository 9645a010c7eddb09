; int 13h conformance program: calls each function with its edge cases and reports the raw results on port E9h,
; one `T <id> KEY=HEX ...` line per case, ids numbered by function group (docs/int13.md's case column).
; The same image runs under QEMU+SeaBIOS and under nbdboot; tests/support/int13_expect.py says what each BIOS returns.
;
; Disk layout (bootimages/conformance/mkdata.py): this program from LBA 0, data sectors after it whose content is
; a function of their LBA. 20 x 16 x 63 = 20160 sectors, one partition whose end CHS states that geometry.
; Writes go to LBA 126 (CHS 0/2/1) and 500 only: serve the image copy-on-write. LBA 700-703 must fail with EIO:
; serve through nbdkit's ddrescue filter with badsectors.map; writes to LBA 800-801 must fail (nbdkit's protect
; filter). tests/test_reference_conformance.py conformance_server_args() shows how.

        cpu 386
        bits 16
        org 7C00h

SNAP      equ 0500h             ; register snapshot (report.inc)
ENTRY     equ 0540h             ; registers at entry from the BIOS
DAP       equ 0580h             ; disk address packet, up to 20h bytes
EDDBUF    equ 0600h             ; AH=48h result buffer (80h bytes checked)
PKT       equ 0680h             ; AH=4Bh packet (20h bytes checked)
BUF       equ 20000h            ; linear read buffer; BUF_SEG:0
BUF_SEG   equ BUF >> 4
FILLER    equ 0CCh              ; buffers are filled with this before each read
drive     equ 0570h             ; the boot drive (byte), kept outside the program so sector 0 stays as on disk


%include "boot.inc"

start:
        ; The registers exactly as the BIOS handed over, before anything touches them.
        mov [cs:ENTRY+0], eax
        mov [cs:ENTRY+4], ebx
        mov [cs:ENTRY+8], ecx
        mov [cs:ENTRY+12], edx
        mov [cs:ENTRY+16], esi
        mov [cs:ENTRY+20], edi
        mov [cs:ENTRY+24], ebp
        mov [cs:ENTRY+28], ds
        mov [cs:ENTRY+30], es
        mov [cs:ENTRY+32], ss
        mov [cs:ENTRY+34], sp
        mov [cs:ENTRY+36], cs
        mov [cs:ENTRY+38], fs
        mov [cs:ENTRY+40], gs
        pushf
        pop word [cs:ENTRY+42]
        jmp 0:.canonical                ; whatever CS:IP the BIOS chose, run at 0000:7Cxx
.canonical:
        FLAT_SEGMENTS

        ; The rest of the program: CHS 0/0/2 onwards, into 0000:7E00.
        LOAD_REST PROGRAM_SECTORS - 1

%include "geometry.inc"

%include "report.inc"

; --------------------------------------------------------------------------------------------------------------
; Helpers for the cases.

; int13: int 13h with DL = the boot drive unless the caller set the flag below, snapshot afterwards.
; chs_read: fills BUF, then AH=02h with AL=count and CX/DH as given, DL = the boot drive, ES:BX = BUF_SEG:0.
chs_read:
        push eax
        push edx
        push cx
        mov edx, BUF
        mov cx, 130
        mov al, FILLER
        call fill_linear
        pop cx
        pop edx
        pop eax
        mov ah, 02h
        mov dl, [drive]
        mov bx, BUF_SEG
        mov es, bx
        xor bx, bx
        ret

; dap16 EAX=LBA, CX=count: a 16-byte DAP at DAP pointing at BUF_SEG:0, buffer filled; DS:SI = DAP.
dap_setup:
        pushad
        mov edx, BUF
        push cx
        mov cx, 130
        mov al, FILLER
        call fill_linear
        pop cx
        popad
        mov dword [DAP], 0
        mov byte [DAP], 10h
        mov [DAP+2], cx
        mov word [DAP+4], 0
        mov word [DAP+6], BUF_SEG
        mov [DAP+8], eax
        mov dword [DAP+12], 0
        mov dword [DAP+16], 0
        mov dword [DAP+20], 0
        mov dword [DAP+24], 0
        mov dword [DAP+28], 0
        mov si, DAP
        ret

; fill_low: CX bytes at DS:DI = FILLER (for small result buffers).
fill_low:
        pusha
        push es
        push ds
        pop es
        mov al, FILLER
        rep stosb
        pop es
        popa
        ret

; written: AX = 1 + offset of the last byte of the CX bytes at DI that is not FILLER (0 if none).
written:
        push di
        push cx
        xor ax, ax
        jcxz .done
        mov bx, cx
.scan:  cmp byte [di+bx-1], FILLER
        jne .found
        dec bx
        jnz .scan
        jmp .done
.found: mov ax, bx
.done:  pop cx
        pop di
        ret

%macro SUM 2                            ; SUM "KEY", sectors: checksum of BUF over that many sectors
        push edx
        push cx
        mov edx, BUF
        mov cx, %2
        call csum_linear
        pop cx
        pop edx
        HEX %1, 32, dword [cs:r_sum]
%endmacro

; --------------------------------------------------------------------------------------------------------------
main:
        in al, 92h                      ; fast A20: the flat-buffer case writes above 1 MiB
        or al, 2
        and al, 0FEh
        out 92h, al

        mov si, hello
        call puts

        ; 10.1 the hand-off registers and the BDA as the boot program finds them.
        T "10.1"
        HEX "EAX", 32, dword [ENTRY+0]
        HEX "EBX", 32, dword [ENTRY+4]
        HEX "ECX", 32, dword [ENTRY+8]
        HEX "EDX", 32, dword [ENTRY+12]
        HEX "ESI", 32, dword [ENTRY+16]
        HEX "EDI", 32, dword [ENTRY+20]
        HEX "EBP", 32, dword [ENTRY+24]
        HEX "DS", 16, word [ENTRY+28]
        HEX "ES", 16, word [ENTRY+30]
        HEX "SS", 16, word [ENTRY+32]
        HEX "SP", 16, word [ENTRY+34]
        HEX "CS", 16, word [ENTRY+36]
        HEX "FS", 16, word [ENTRY+38]
        HEX "GS", 16, word [ENTRY+40]
        BIT "IF", word [ENTRY+42], 9
        HEX "HDCOUNT", 8, byte [475h]
        HEX "EQUIP", 16, word [410h]
        HEX "SIG", 16, word [7DFEh]
        ENDL

        ; 1.1 AH=08h on the boot drive: geometry and the drive count.
        mov dl, [drive]
        mov ah, 08h
        xor di, di
        mov es, di
        CALL13
        T "1.1"
        STATUS
        HEX "AL", 8, byte [r_eax]
        HEX "CX", 16, word [r_ecx]
        HEX "DX", 16, word [r_edx]
        HEX "BL", 8, byte [r_ebx]
        HEX "HDCOUNT", 8, byte [475h]
        ENDL

        ; 1.2 AH=08h on a hard disk nobody has (DL = boot drive + 1).
        mov dl, [drive]
        inc dl
        mov ah, 08h
        CALL13
        T "1.2"
        STATUS
        HEX "DL", 8, byte [r_edx]
        ENDL

        ; 1.3 AH=02h from a hard disk nobody has: GRUB enumerates disks until a read fails.
        mov al, 1
        mov cx, 0001h
        xor dx, dx
        call chs_read
        inc dl
        CALL13
        T "1.3"
        STATUS
        ENDL

        ; 1.4 40:75 clobbered to 0 (an AMI BIOS did; bootmgr then finds no disk), then AH=08h: who repairs it?
        mov al, [475h]
        mov [r_ebp+3], al
        mov byte [475h], 0
        mov dl, [drive]
        mov ah, 08h
        CALL13
        mov al, [475h]
        mov ah, [r_ebp+3]
        mov [475h], ah
        mov [r_ebp+2], al
        T "1.4"
        STATUS
        HEX "DL", 8, byte [r_edx]
        HEX "HDCOUNT", 8, byte [r_ebp+2]
        ENDL

        ; 2.1 AH=00h reset.
        mov dl, [drive]
        xor ah, ah
        CALL13
        T "2.1"
        STATUS
        ENDL

        ; 2.2 AH=01h after a successful read.
        mov al, 1
        mov cx, 0001h
        xor dx, dx
        call chs_read
        int 13h
        mov dl, [drive]
        mov ah, 01h
        CALL13
        T "2.2"
        STATUS
        HEX "BDA74", 8, byte [474h]
        ENDL

        ; 2.3 AH=01h after a failed read (sector 0).
        mov al, 1
        mov cx, 0000h
        xor dx, dx
        call chs_read
        int 13h
        mov dl, [drive]
        mov ah, 01h
        CALL13
        T "2.3"
        STATUS
        HEX "BDA74", 8, byte [474h]
        ENDL

        ; 2.4 AH=01h after AH=41h (iPXE keeps 41h's AH=30h as the last status).
        mov dl, [drive]
        mov ah, 41h
        mov bx, 55AAh
        int 13h
        mov dl, [drive]
        mov ah, 01h
        CALL13
        T "2.4"
        STATUS
        ENDL

        ; 3.x CHS reads. LBA = (c * 16 + h) * 63 + s - 1.
%macro CHS_CASE 5                       ; id, AL, CX, DH, sectors summed
        mov al, %2
        mov cx, %3
        mov dx, %4 << 8
        call chs_read
        CALL13
        T %1
        STATUS
        HEX "AL", 8, byte [r_eax]
        SUM "SUM", %5
        ENDL
%endmacro
        CHS_CASE "3.1", 1, 0001h, 1, 1                  ; c0 h1 s1 = LBA 63
        CHS_CASE "3.2", 1, (19 << 8) | 63, 15, 1        ; the last sector: LBA 20159
        CHS_CASE "3.3", 1, 0000h, 1, 1                  ; sector 0
        CHS_CASE "3.4", 1, 0001h, 16, 1                 ; head 16 = H
        CHS_CASE "3.5", 1, (20 << 8) | 1, 0, 1          ; cylinder 20 = C
        CHS_CASE "3.6", 0, 0001h, 1, 1                  ; AL=0
        CHS_CASE "3.7", 128, 0002h, 1, 128              ; AL=128 from LBA 64: exactly 64 KiB
        CHS_CASE "3.8", 129, 0002h, 1, 129              ; AL=129
        CHS_CASE "3.9", 2, 003Fh, 3, 2                  ; c0 h3 s63 = LBA 251, 2 sectors across a head
        CHS_CASE "3.10", 1, (1 << 8) | 1, 0, 1          ; c1 h0 s1 = LBA 1008
        CHS_CASE "3.11", 1, 0040h, 0, 1                 ; sector 64 > S

        ; 3.12 a 2-sector read at 1000:FF00 crosses the segment's end: linear or wrapped?
        mov edx, 10000h
        mov cx, 1
        mov al, FILLER
        call fill_linear
        mov edx, 1FF00h
        mov cx, 2
        call fill_linear
        mov ax, 1000h
        mov es, ax
        mov bx, 0FF00h
        mov ax, 0202h
        mov cx, 0002h                   ; c0 h1 s2 = LBA 64
        mov dh, 1
        mov dl, [drive]
        CALL13
        T "3.12"
        STATUS
        HEX "AL", 8, byte [r_eax]
        mov edx, 1FF00h
        mov cx, 2
        call csum_linear
        HEX "LINEAR", 32, dword [r_sum]
        mov edx, 10000h
        mov cx, 1
        call csum_linear
        HEX "WRAPPED", 32, dword [r_sum]
        ENDL

        ; 3.13 AH=03h writes this program's first sector to c0 h2 s1 (LBA 126); 3.14 reads it back.
        mov ax, 0301h
        mov cx, 0001h
        mov dh, 2
        mov dl, [drive]
        xor bx, bx
        mov es, bx
        mov bx, 7C00h
        CALL13
        T "3.13"
        STATUS
        HEX "AL", 8, byte [r_eax]
        ENDL
        CHS_CASE "3.14", 1, 0001h, 2, 1

        ; 3.15 AH=04h verify.
        mov ax, 0401h
        mov cx, 0001h
        mov dh, 1
        mov dl, [drive]
        CALL13
        T "3.15"
        STATUS
        HEX "AL", 8, byte [r_eax]
        ENDL

        ; 3.16 a CHS read of c0 h11 s8 = LBA 700, which the server fails with EIO (badsectors.map); 3.17 AH=01h
        ; right after it.
        CHS_CASE "3.16", 1, 0008h, 11, 1
        mov dl, [drive]
        mov ah, 01h
        CALL13
        T "3.17"
        STATUS
        HEX "BDA74", 8, byte [474h]
        ENDL

        ; 3.18 AH=03h to LBA 800 (c0 h12 s45), which the server refuses to change (EPERM, protect filter).
        mov ax, 0301h
        mov cx, 002Dh
        mov dh, 12
        mov dl, [drive]
        xor bx, bx
        mov es, bx
        mov bx, 7C00h
        CALL13
        T "3.18"
        STATUS
        HEX "AL", 8, byte [r_eax]
        ENDL

        ; 5.x AH=41h.
        mov dl, [drive]
        mov ah, 41h
        mov bx, 55AAh
        CALL13
        T "5.1"
        STATUS
        HEX "BX", 16, word [r_ebx]
        HEX "CX", 16, word [r_ecx]
        HEX "DL", 8, byte [r_edx]
        ENDL

        mov dl, [drive]
        mov ah, 41h
        mov bx, 1234h
        xor cx, cx
        CALL13
        T "5.2"
        STATUS
        HEX "BX", 16, word [r_ebx]
        HEX "CX", 16, word [r_ecx]
        ENDL

        mov dl, 0                       ; the first floppy (none, or one of ours)
        mov ah, 41h
        mov bx, 55AAh
        CALL13
        T "5.3"
        STATUS
        HEX "BX", 16, word [r_ebx]
        ENDL

        cli                             ; 5.4 what IF does the caller get back after a disk call with IF=0?
        mov dl, [drive]
        mov ah, 41h
        mov bx, 55AAh
        int 13h
        call snap
        sti
        T "5.4"
        STATUS
        BIT "IF", word [r_flags], 9
        ENDL

        ; 6.x AH=42h/43h.
%macro EXT_CASE 6                       ; id, LBA, count, DAP size, sectors summed, AH
        mov eax, %2
        mov cx, %3
        call dap_setup
        mov byte [DAP], %4
        mov ah, %6
        mov dl, [drive]
        CALL13
        T %1
        STATUS
        HEX "COUNT", 16, word [DAP+2]
        SUM "SUM", %5
        ENDL
%endmacro
        EXT_CASE "6.1", 200, 1, 10h, 1, 42h
        EXT_CASE "6.2", 202, 1, 20h, 1, 42h             ; DAP size 20h
        EXT_CASE "6.3", 203, 0, 10h, 1, 42h             ; count 0: nothing read
        EXT_CASE "6.4", 300, 127, 10h, 127, 42h
        EXT_CASE "6.5", 300, 128, 10h, 128, 42h         ; 80h: past iPXE's 7Fh, exactly SeaBIOS's 64 KiB
        EXT_CASE "6.6", DISK_SECTORS, 1, 10h, 1, 42h    ; LBA past the end
        EXT_CASE "6.7", DISK_SECTORS - 1, 2, 10h, 2, 42h ; straddles the end
        EXT_CASE "6.8", 204, 1, 0Fh, 1, 42h             ; DAP size below 10h
        EXT_CASE "6.9", DISK_SECTORS - 1, 1, 10h, 1, 42h ; the last sector

        ; 6.10 count FFh with the u32 long count at DAP+18h (EDD-4, iPXE): 2 sectors.
        mov eax, 400
        mov cx, 0FFh
        call dap_setup
        mov byte [DAP], 20h
        mov dword [DAP+18h], 2
        mov ah, 42h
        mov dl, [drive]
        CALL13
        T "6.10"
        STATUS
        HEX "COUNT", 16, word [DAP+2]
        SUM "SUM", 2
        ENDL

        ; 6.11 buffer FFFF:FFFF with a 64-bit flat address above 1 MiB at DAP+10h (DAP size 18h).
        mov edx, 101000h
        mov cx, 1
        call csum_linear                ; fill cannot reach above 1 MiB from here: record what is there
        mov ebp, [r_sum]
        mov eax, 201
        mov cx, 1
        call dap_setup
        mov byte [DAP], 18h
        mov dword [DAP+4], 0FFFFFFFFh
        mov dword [DAP+10h], 101000h
        mov ah, 42h
        mov dl, [drive]
        CALL13
        T "6.11"
        STATUS
        HEX "COUNT", 16, word [DAP+2]
        HEX "BEFORE", 32, ebp
        mov edx, 101000h
        mov cx, 1
        call csum_linear
        HEX "FLAT", 32, dword [r_sum]
        ENDL

        ; 6.12 a DAP on the stack, DS = SS = 7000h (Windows MBR style).
        mov eax, 205
        mov cx, 1
        call dap_setup
        mov ax, 7000h
        cli
        mov ss, ax
        mov sp, 1000h
        sti
        push dword 0
        push dword 205
        push word BUF_SEG
        push word 0
        push word 1
        push word 0010h
        mov ds, ax
        mov si, sp
        mov ah, 42h
        mov dl, [cs:drive]
        int 13h
        call snap
        mov ax, [ss:0FF2h]              ; the DAP count word as the BIOS left it
        mov [cs:DAP+2], ax
        xor ax, ax
        cli
        mov ss, ax
        mov sp, 7C00h
        sti
        mov ds, ax
        mov es, ax
        T "6.12"
        STATUS
        HEX "COUNT", 16, word [DAP+2]
        SUM "SUM", 1
        ENDL

        ; 6.13 AH=43h writes this program's first sector to LBA 500; 6.14 reads it back.
        mov eax, 500
        mov cx, 1
        call dap_setup
        mov word [DAP+4], 7C00h
        mov word [DAP+6], 0
        mov ax, 4300h
        mov dl, [drive]
        CALL13
        T "6.13"
        STATUS
        HEX "COUNT", 16, word [DAP+2]
        ENDL
        EXT_CASE "6.14", 500, 1, 10h, 1, 42h

        ; 6.15 AH=44h verify, 6.16 AH=47h seek.
        EXT_CASE "6.15", 206, 1, 10h, 1, 44h
        EXT_CASE "6.16", 206, 1, 10h, 1, 47h

        ; 6.17 AH=42h over the failing sectors 699-702: the DAP count afterwards says what the BIOS claims.
        EXT_CASE "6.17", 699, 4, 10h, 1, 42h

        ; 6.18 AH=43h to LBA 801, also refused by the server.
        mov eax, 801
        mov cx, 1
        call dap_setup
        mov word [DAP+4], 7C00h
        mov word [DAP+6], 0
        mov ax, 4300h
        mov dl, [drive]
        CALL13
        T "6.18"
        STATUS
        HEX "COUNT", 16, word [DAP+2]
        ENDL

        ; 7.x AH=48h with caller buffer sizes 18h, 1Ah, 1Eh, 42h, 4Ah.
%macro EDD_CASE 2                       ; id, buffer size
        mov di, EDDBUF
        mov cx, 80h
        call fill_low
        mov word [EDDBUF], %2
        mov si, EDDBUF
        mov ah, 48h
        mov dl, [drive]
        CALL13
        T %1
        STATUS
        HEX "SIZE", 16, word [EDDBUF]
        HEX "FLAGS", 16, word [EDDBUF+2]
        HEX "CYL", 32, dword [EDDBUF+4]
        HEX "HEADS", 32, dword [EDDBUF+8]
        HEX "SPT", 32, dword [EDDBUF+12]
        HEX "SECTORS", 32, dword [EDDBUF+16]
        HEX "SECTORSHI", 32, dword [EDDBUF+20]
        HEX "BPS", 16, word [EDDBUF+24]
        HEX "DPTE", 32, dword [EDDBUF+26]
        HEX "KEY", 16, word [EDDBUF+30]
        mov di, EDDBUF
        mov cx, 80h
        call written
        mov [r_ebp], ax
        HEX "WRITTEN", 16, word [r_ebp]
        ENDL
%endmacro
        EDD_CASE "7.1", 18h
        EDD_CASE "7.2", 1Ah
        EDD_CASE "7.3", 1Eh
        EDD_CASE "7.4", 42h
        EDD_CASE "7.5", 4Ah

        ; 8.1 AH=15h on the boot drive, 8.2 on the first floppy.
        mov dl, [drive]
        mov ah, 15h
        CALL13
        T "8.1"
        STATUS
        HEX "CX", 16, word [r_ecx]
        HEX "DX", 16, word [r_edx]
        ENDL
        mov dl, 0
        mov ah, 15h
        CALL13
        T "8.2"
        STATUS
        ENDL

        ; 9.1 AX=4B01h on a hard disk: GRUB mis-types the disk as a CD if this succeeds.
        mov di, PKT
        mov cx, 20h
        call fill_low
        mov si, PKT
        mov ax, 4B01h
        mov dl, [drive]
        CALL13
        T "9.1"
        STATUS
        HEX "PSIZE", 8, byte [PKT]
        HEX "PMEDIA", 8, byte [PKT+1]
        HEX "PDRIVE", 8, byte [PKT+2]
        mov di, PKT
        mov cx, 20h
        call written
        mov [r_ebp], ax
        HEX "WRITTEN", 16, word [r_ebp]
        ENDL

        ; 9.2 AH=4Dh (boot catalog) on a hard disk.
        mov di, PKT
        mov cx, 20h
        call fill_low
        mov byte [PKT], 8
        mov byte [PKT+1], 1
        mov dword [PKT+2], BUF
        mov word [PKT+6], 0
        mov si, PKT
        mov ah, 4Dh
        mov dl, [drive]
        CALL13
        T "9.2"
        STATUS
        ENDL

        ; 12.x the functions iPXE does not implement, on the boot drive. Format (05h) is left out on purpose.
%macro MISC_CASE 2                      ; id, AX
        mov ax, %2
        mov dl, [drive]
        mov cx, 0001h
        xor dh, dh
        mov bx, BUF_SEG
        mov es, bx
        xor bx, bx
        mov si, PKT
        CALL13
        T %1
        STATUS
        ENDL
%endmacro
        MISC_CASE "12.09", 0900h
        MISC_CASE "12.0C", 0C00h
        MISC_CASE "12.0D", 0D00h
        MISC_CASE "12.10", 1000h
        MISC_CASE "12.11", 1100h
        MISC_CASE "12.14", 1400h
        MISC_CASE "12.16", 1600h
        MISC_CASE "12.17", 1700h
        MISC_CASE "12.45", 4500h
        MISC_CASE "12.49", 4900h
        MISC_CASE "12.4E", 4E01h
        MISC_CASE "12.60", 6000h

        ; 11.1 INT 1Ah AX=BB00h: the TCG check the Windows 7 MBR makes (EAX=0 means a TPM).
        mov eax, 0BB00h
        xor ebx, ebx
        int 1Ah
        call snap
        T "11.1"
        BIT "CF", word [r_flags], 0
        HEX "EAX", 32, dword [r_eax]
        ENDL

        ; 11.2 INT 15h E820, first entry.
        mov di, PKT
        mov cx, 20h
        call fill_low
        mov eax, 0E820h
        xor ebx, ebx
        mov ecx, 20
        mov edx, 534D4150h
        mov di, PKT
        int 15h
        call snap
        T "11.2"
        BIT "CF", word [r_flags], 0
        HEX "EAX", 32, dword [r_eax]
        HEX "ECX", 32, dword [r_ecx]
        HEX "BASE", 32, dword [PKT]
        HEX "TYPE", 32, dword [PKT+16]
        ENDL

        ; 11.3 the Windows MBR's A20 sequence through the 8042 (D1h to 64h, DFh to 60h, FFh to 64h, polling the
        ; input-buffer-full bit with a bound), after switching fast A20 off: does A20 end up on, and no hang?
        in al, 92h
        and al, 0FCh
        out 92h, al
        call kbc_wait
        mov al, 0D1h
        out 64h, al
        call kbc_wait
        mov al, 0DFh
        out 60h, al
        call kbc_wait
        mov al, 0FFh
        out 64h, al
        call kbc_wait
        mov [r_ebp], cx                 ; polls left on the last wait (0 = timed out)
        call a20_on
        mov [r_ebp+2], al
        T "11.3"
        HEX "A20", 8, byte [r_ebp+2]
        BIT "TIMEOUT", word [r_ebp], 15   ; bit 15 of the remaining count is never set unless the wait ran out
        ENDL

        ; 11.4 INT 16h AH=01h with no key pressed: ZF=1.
        mov ah, 01h
        int 16h
        call snap
        T "11.4"
        BIT "ZF", word [r_flags], 6
        ENDL

        FINISH screen_done

; kbc_wait: polls port 64h until the input buffer is empty (bit 1 clear), at most 7FFFh times. CX = polls left
; (FFFFh after a timeout, whose bit 15 is set; 7FFFh or less otherwise).
kbc_wait:
        mov cx, 7FFFh
.poll:  in al, 64h
        test al, 2
        jz .done
        loop .poll
        dec cx
.done:  ret

; a20_on: AL = 1 if A20 is enabled (0000:0600 and FFFF:0610 are different memory), else 0.
a20_on:
        push ds
        push es
        xor ax, ax
        mov ds, ax
        dec ax
        mov es, ax
        mov al, [0600h]
        push ax
        mov byte [0600h], 00h
        mov byte [es:0610h], 0FFh
        cmp byte [0600h], 0FFh
        pop ax
        mov [0600h], al
        setne al
        pop es
        pop ds
        ret

hello:       db "BEGIN conformance 1", 10, 0
bye:         db "END conformance", 10, 0
screen_done: db "nbdboot int 13h conformance: done", 13, 10, 0

PROGRAM_SECTORS equ ($ - $$ + 511) / 512
        times PROGRAM_SECTORS * 512 - ($ - $$) db 0
