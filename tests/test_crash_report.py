"""The crash report: the header names the instruction the listing points at, the listing starts on an
instruction boundary, and bytes that do not decode are shown raw instead of an empty `code:`."""

from __future__ import annotations

import re

import pytest

from nbdboot.debug.sectors import run_sector
from nbdboot.machine.machine import GuestCrash


def crash(tmp_path, body, **kw):
    with pytest.raises(GuestCrash) as info:
        run_sector(tmp_path, body, until="never", **kw)
    return info.value


def header(report):
    m = re.match(r"CS:IP ([0-9a-f]{4}):([0-9a-f]{4,8}) \(linear (0x[0-9a-f]+),", report)
    return int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16)


def test_halt_report_header_agrees_with_its_linear_address(tmp_path):
    report = crash(tmp_path, "        cli\n        hlt\n").report
    cs, ip, linear = header(report)
    assert (cs << 4) + ip == linear
    assert re.search(rf"=> {linear:08x}  f4 +hlt", report), report


def test_undecodable_bytes_are_shown_raw(tmp_path):
    body = r"""
        mov ax, 5000h
        mov es, ax
        xor di, di
        mov cx, 32
        mov al, 0FFh
        rep stosb
        mov word [es:0], 0FF0Fh     ; ud0: #UD, then bytes no decoder takes
        jmp 5000h:0000h
"""
    report = crash(tmp_path, body).report
    code = report.split("code:\n", 1)[1].split("last interrupts", 1)[0]
    assert "ffffffffffffffff (not decodable" in code, report
    assert "=> 00050000" in code


def test_protected_mode_triple_fault_points_at_the_int_on_an_instruction_boundary(tmp_path):
    body = r"""
        cli
        xor ax, ax
        mov ds, ax
        lgdt [gdt_desc]
        lidt [idt_desc]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp 08h:pm32
        bits 32
pm32:   mov ax, 10h
        mov ds, ax
        mov eax, [1000h]
        int 3
        align 8
gdt:    dq 0
        dq 00CF9A000000FFFFh
        dq 00CF92000000FFFFh
gdt_desc: dw 23
        dd gdt
idt_desc: dw 0
        dd 0
        bits 16
"""
    error = crash(tmp_path, body, no_reboot=True)
    assert "triple fault" in str(error)
    code = error.report.split("code:\n", 1)[1].split("last interrupts", 1)[0].splitlines()
    marked = [line for line in code if line.lstrip().startswith("=>")]
    assert len(marked) == 1 and "int 3" in marked[0], error.report
    before = code[code.index(marked[0]) - 1]
    assert "mov eax, dword ptr [0x1000]" in before, error.report
    cs, ip, linear = header(error.report)
    assert marked[0].split()[1] == f"{linear:08x}"
