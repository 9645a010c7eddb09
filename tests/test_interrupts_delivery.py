"""machine/interrupts.py against the SDM (vol. 3 ch. 6), on a bare CPU: properties over vectors, modes, gate kinds
and privilege levels, the frame on the stack compared with the one the SDM prescribes; and crash reports for
faults the guest cannot survive.

The model here is written from the SDM's pseudo-code for INT n / interrupt delivery, independently of the module.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbdboot.machine import interrupts as ints
from nbdboot.machine.cpu import Cpu
from nbdboot.machine.machine import GuestCrash
from nbdboot.debug.sectors import run_sector

GDT, IDT, TSS = 0x1000, 0x2000, 0x3000
KSTACK16, KSTACK32, USTACK = 0x9000, 0x8F000, 0x7000
CODE0_32, DATA0_32, CODE3, DATA3, TSS_SEL, CODE0_16, DATA0_16 = 0x08, 0x10, 0x1B, 0x23, 0x28, 0x30, 0x38
HANDLER = 0x12345678


def desc(base, limit, access, flags):
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       ((limit >> 16) & 0xF) | (flags << 4), base >> 24)


def gate(offset, selector, kind, dpl, present=True):
    access = (0x80 if present else 0) | (dpl << 5) | kind
    return struct.pack("<HHBBH", offset & 0xFFFF, selector, 0, access, offset >> 16)


def machine_cpu(stack32: bool):
    cpu = Cpu(16 << 20)
    gdt = (b"\0" * 8 + desc(0, 0xFFFFF, 0x9A, 0xC) + desc(0, 0xFFFFF, 0x92, 0xC if stack32 else 0x8)
           + desc(0, 0xFFFFF, 0xFA, 0xC) + desc(0, 0xFFFFF, 0xF2, 0xC) + desc(TSS, 0x67, 0x89, 0)
           + desc(0, 0xFFFF, 0x9A, 0) + desc(0, 0xFFFF, 0x92, 0))
    cpu.write(GDT, gdt)
    cpu.uc.reg_write(ints.X.UC_X86_REG_GDTR, (0, GDT, len(gdt) - 1, 0))
    cpu.uc.reg_write(ints.X.UC_X86_REG_IDTR, (0, IDT, 256 * 8 - 1, 0))
    cpu.write(TSS + 4, struct.pack("<II", KSTACK32 if stack32 else KSTACK16, DATA0_32))
    cpu.set("cr0", 0x11)
    cpu.uc.reg_write(ints.X.UC_X86_REG_TR, (TSS_SEL, TSS, 0x67, 0x8B00))
    return cpu


def enter(cpu, delivery, mode: str, stack32: bool):
    """Put the CPU in `mode` at CS:EIP = ?:0x4321 with a known stack and EFLAGS."""
    if mode == "ring0":
        cpu.set("cs", CODE0_32)
        cpu.set("ss", DATA0_32)
        cpu.set("esp", (KSTACK32 if stack32 else KSTACK16) - 0x100)
        cpu.set("eflags", 0x0246 | 0x200)
    elif mode == "ring3":
        delivery.env.force_cpl(3)
        cpu.set("cs", CODE3)
        cpu.set("ss", DATA3)
        cpu.set("esp", USTACK)
        cpu.set("eflags", 0x3202)
    else:  # v86
        cpu.set("eflags", 0x20202)
        delivery.env.force_cpl(3)
        for seg, value in (("cs", 0x1234), ("ss", 0x0500), ("ds", 0x0600), ("es", 0x0700), ("fs", 0x0800),
                           ("gs", 0x0900)):
            cpu.set(seg, value)
        cpu.set("esp", 0x0FFE)


def sdm_frame(mode, gate32, eflags, cs, eip, ss, esp, segs, error_code):
    """What the SDM says is on the handler's stack, from the top down."""
    words = [eip, cs, eflags]
    if mode != "ring0":
        words += [esp, ss]
    if mode == "v86":
        words += [segs["es"], segs["ds"], segs["fs"], segs["gs"]]
    if error_code is not None:
        words = [error_code] + words
    fmt = "<I" if gate32 else "<H"
    mask = 0xFFFFFFFF if gate32 else 0xFFFF
    return b"".join(struct.pack(fmt, w & mask) for w in words)


@settings(max_examples=60, deadline=None)
@given(vector=st.integers(0x20, 0xFF), mode=st.sampled_from(["ring0", "ring3", "v86"]),
       kind=st.sampled_from([ints.GATE_INT16, ints.GATE_TRAP16, ints.GATE_INT32, ints.GATE_TRAP32]),
       source=st.sampled_from([ints.SOFTWARE, ints.EXTERNAL, ints.EXCEPTION]), dpl=st.integers(0, 3),
       stack32=st.booleans(), with_error=st.booleans())
def test_frame_and_registers_are_what_the_sdm_says(vector, mode, kind, source, dpl, stack32, with_error):
    gate32 = kind in (ints.GATE_INT32, ints.GATE_TRAP32)
    cpu = machine_cpu(stack32)
    delivery = ints.Interrupts(cpu)
    handler = HANDLER if gate32 else HANDLER & 0xFFFF
    cpu.write(IDT + vector * 8, gate(handler, CODE0_32 if gate32 else CODE0_16, kind, dpl))
    if not gate32:  # a 16-bit gate into a 16-bit ring-0 code segment; its stack is SS0 from the TSS
        pass
    enter(cpu, delivery, mode, stack32)
    before = {n: cpu.get(n) for n in ("eflags", "cs", "ss", "esp", "ds", "es", "fs", "gs")}
    error_code = 0x5A5A if with_error and source == ints.EXCEPTION else None
    cpl = 0 if mode == "ring0" else 3
    if mode == "v86" and source == ints.SOFTWARE:
        source = ints.EXCEPTION  # int n from V86 at IOPL 0 is a #GP, never a gate call
    if source == ints.SOFTWARE and dpl < cpl:
        # SDM: #GP(vector*8+2), reported on the instruction, through the #GP gate
        cpu.write(IDT + 13 * 8, gate(0x4000, CODE0_32, ints.GATE_INT32, 0))
        delivery.deliver(vector, source, 0x4321, None, running=False, insn_length=2)
        assert cpu.get("eip") == 0x4000 and cpu.get("cs") == CODE0_32
        esp = cpu.get("esp")
        assert struct.unpack("<II", cpu.read(esp, 8)) == (vector * 8 + 2, 0x4321 - 2)
        return
    delivery.deliver(vector, source, 0x4321, error_code, running=False)
    # registers: CS:EIP from the gate, ring 0, IF cleared by interrupt gates only, TF NT VM RF cleared
    assert cpu.get("eip") == handler
    assert cpu.get("cs") == (CODE0_32 if gate32 else CODE0_16)
    flags = cpu.get("eflags")
    assert not flags & (ints.FLAG_TF | ints.FLAG_NT | ints.FLAG_VM | ints.FLAG_RF)
    assert bool(flags & ints.FLAG_IF) == (kind in (ints.GATE_TRAP16, ints.GATE_TRAP32))
    if mode == "ring0":
        assert cpu.get("ss") == DATA0_32
        top = before["esp"]
        ss_base = 0
    else:  # stack switch to SS0:ESP0 from the TSS
        assert cpu.get("ss") == DATA0_32
        top = KSTACK32 if stack32 else KSTACK16
        ss_base = 0
    if mode == "v86":
        assert [cpu.get(s) for s in ("ds", "es", "fs", "gs")] == [0, 0, 0, 0]
    frame = sdm_frame(mode, gate32, before["eflags"], before["cs"], 0x4321, before["ss"], before["esp"],
                      before, error_code)
    esp = cpu.get("esp")
    if not stack32:
        esp &= 0xFFFF
    assert esp == (top - len(frame)) & (0xFFFFFFFF if stack32 else 0xFFFF)
    assert cpu.read(ss_base + esp, len(frame)) == frame


def test_a_not_present_gate_is_np_with_the_idt_bit_and_ext():
    cpu = machine_cpu(True)
    delivery = ints.Interrupts(cpu)
    cpu.write(IDT + 0x40 * 8, gate(HANDLER, CODE0_32, ints.GATE_INT32, 0, present=False))
    cpu.write(IDT + 11 * 8, gate(0x5000, CODE0_32, ints.GATE_INT32, 0))
    enter(cpu, delivery, "ring0", True)
    delivery.deliver(0x40, ints.EXTERNAL, 0x4321, None, running=False)
    assert cpu.get("eip") == 0x5000
    # #NP error code: index 40h, IDT bit (2), EXT (1) for an external event
    assert struct.unpack("<II", cpu.read(cpu.get("esp"), 8)) == (0x40 * 8 + 2 + 1, 0x4321)


def test_a_fault_delivering_a_contributory_fault_is_a_double_fault_then_a_triple_fault():
    cpu = machine_cpu(True)
    delivery = ints.Interrupts(cpu)
    enter(cpu, delivery, "ring0", True)
    cpu.write(IDT + 8 * 8, gate(0x6000, CODE0_32, ints.GATE_INT32, 0))
    # #GP's gate is absent: #NP while delivering #GP (both contributory) -> #DF
    delivery.deliver(13, ints.EXCEPTION, 0x4321, 0, running=False)
    assert cpu.get("eip") == 0x6000
    assert struct.unpack("<I", cpu.read(cpu.get("esp"), 4)) == (0,)  # #DF pushes error code 0
    cpu.write(IDT + 8 * 8, b"\0" * 8)
    with pytest.raises(ints.TripleFault):
        delivery.deliver(13, ints.EXCEPTION, 0x4321, 0, running=False)


def test_delivery_walks_the_page_tables():
    cpu = machine_cpu(True)
    delivery = ints.Interrupts(cpu)
    # the IDT at linear 0x400000 -> physical 0x2000; the stack at linear 0x800000 -> physical 0x80000
    pd, pt1, pt2 = 0x20000, 0x21000, 0x22000
    cpu.write(pd + 4 * 1, struct.pack("<I", pt1 | 3))
    cpu.write(pd + 4 * 2, struct.pack("<I", pt2 | 3))
    cpu.write(pd, struct.pack("<I", 0x83))  # 0-4 MiB identity, one 4 MiB page (PSE)
    cpu.write(pt1, struct.pack("<I", IDT | 3))
    cpu.write(pt2 + 0xFF * 4, struct.pack("<I", 0x80000 | 3))
    cpu.set("cr4", 0x10)
    cpu.set("cr3", pd)
    cpu.uc.reg_write(ints.X.UC_X86_REG_IDTR, (0, 0x400000, 256 * 8 - 1, 0))
    cpu.write(IDT + 0x30 * 8, gate(HANDLER, CODE0_32, ints.GATE_INT32, 0))
    enter(cpu, delivery, "ring0", True)
    cpu.set("cr0", 0x80000011)
    cpu.set("esp", 0x900000)  # the top of the page at 0x8FF000
    delivery.deliver(0x30, ints.EXTERNAL, 0x4321, None, running=False)
    assert cpu.get("eip") == HANDLER
    assert struct.unpack("<III", cpu.read(0x80000 + 0x1000 - 12, 12))[0] == 0x4321
    # a stack under a not-present page: #PF with CR2, then #DF (no #PF gate), then no #DF gate: shutdown
    cpu.set("esp", 0xA00000)
    with pytest.raises(ints.TripleFault, match="not present"):
        delivery.deliver(0x30, ints.EXTERNAL, 0x4321, None, running=False)
    assert cpu.get("cr2") == 0xA00000 - 4  # the first word pushed (EFLAGS)


def test_a_triple_fault_is_a_crash_report_not_a_traceback(tmp_path):
    body = """
        cli
        lidt [idt_desc]         ; an empty IDT
        lgdt [gdt_desc]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp 08h:pm32
        bits 32
pm32:   int 30h
        bits 16
        align 8
gdt:    dq 0
        dq 00CF9A000000FFFFh
gdt_desc: dw 15
        dd gdt
idt_desc: dw 0
        dd 0
"""
    with pytest.raises(GuestCrash) as info:
        run_sector(tmp_path, body, until="never")
    assert "triple fault" in str(info.value) and "beyond the IDT limit" in str(info.value)
    assert info.value.exit_code == 4
    assert "protected mode, CPL 0" in info.value.report and "\n  => " in info.value.report
    assert "int       30h at 0008:7c43" in info.value.report


def test_the_cpu_state_layout_read_in_a_hook_is_the_one_measured_in_a_scratch_engine(tmp_path):
    # The hook reads QEMU's exception record at offsets it checks against the event it takes; a scratch engine
    # measures them by running known instructions. Both must agree (a new Unicorn would fail here first).
    machine, log = run_sector(tmp_path, """
        mov ax, 0
        mov ds, ax
        mov word [0], handler
        mov word [2], 0
        int 0                   ; a software int 0: the hook must ask Unicorn what it was
        PRINT "DONE"
        hlt
handler: iret
""")
    env = machine.interrupts.env
    assert env.available
    measured = ints.EnvLayout._calibrate()
    fields = ("hflags", "error_code", "is_int", "next_eip", "old_exception")
    assert {f: getattr(env.layout, f) for f in fields} == {f: getattr(measured, f) for f in fields}
