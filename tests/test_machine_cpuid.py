"""CPUID tells what this PC has: no feature the engine cannot execute as the SDM says."""

from __future__ import annotations

import struct

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc, UcError
from unicorn import x86_const as X

from nbdboot.debug.sectors import run_sector


def test_cpuid_reports_neither_sysenter_nor_syscall_nor_an_apic(tmp_path):
    body = r"""
        cpu 586
        mov eax, 1
        cpuid
        mov ax, dx
        and ax, 0A00h           ; SEP (bit 11) and APIC (bit 9)
        HEX16 ax
        mov eax, 80000001h
        cpuid
        mov ax, dx
        and ax, 0A00h           ; SYSCALL (bit 11) and AMD's APIC mirror (bit 9)
        PUTC ' '
        HEX16 ax
        mov eax, 0
        cpuid
        PUTC ' '
        HEX16 bx                ; 'Ge' of GenuineIntel: the rest is the engine's model
        PRINT " DONE"
        hlt
"""
    _, out = run_sector(tmp_path, body)
    assert out == "0000 0000 6547 DONE"


def _desc(base, limit, access, flags):
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       ((limit >> 16) & 0xF) | (flags << 4), base >> 24)


def test_the_engine_still_executes_sysenter_as_a_no_op():
    # Why SEP is hidden. When an engine runs sysenter as the SDM says (CS, EIP, ESP from the
    # IA32_SYSENTER_* MSRs), this fails: then the bit can be shown again.
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000)
    gdt = bytes(8) + _desc(0, 0xFFFFF, 0x9A, 0xC) + _desc(0, 0xFFFFF, 0x92, 0xC)
    uc.mem_write(0x500, gdt)
    uc.reg_write(X.UC_X86_REG_GDTR, (0, 0x500, len(gdt) - 1, 0))
    uc.reg_write(X.UC_X86_REG_CR0, 0x11)
    uc.reg_write(X.UC_X86_REG_CS, 8)
    uc.reg_write(X.UC_X86_REG_SS, 0x10)
    uc.reg_write(X.UC_X86_REG_ESP, 0x8000)
    uc.msr_write(0x174, 8)          # IA32_SYSENTER_CS
    uc.msr_write(0x175, 0x9000)     # IA32_SYSENTER_ESP
    uc.msr_write(0x176, 0x3000)     # IA32_SYSENTER_EIP
    uc.mem_write(0x1000, b"\x0f\x34\xf4")   # sysenter; hlt
    uc.mem_write(0x3000, b"\xf4")           # hlt where sysenter should land
    uc.ctl_exits_enabled(True)
    uc.ctl_set_exits([])
    try:
        uc.emu_start(0x1000, 0xFFFFFFFF)
    except UcError:
        pass
    assert (uc.reg_read(X.UC_X86_REG_EIP), uc.reg_read(X.UC_X86_REG_ESP)) == (0x1003, 0x8000), \
        "sysenter entered the kernel: the engine executes it now, CPUID may report SEP again"
