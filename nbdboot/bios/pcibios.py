"""The PCI BIOS, int 1Ah AX=B1xxh (PCI BIOS specification 2.1), real-mode interface,
over the machine's configuration mechanism #1 (machine/devices/pci.py).

Installation check (B101h: EDX="PCI ", AL=01h mechanism #1, BX=0210h, CL=last bus),
find device (B102h), find class code (B103h), read/write configuration byte, word
and dword (B108h-B10Dh). Special cycles and interrupt routing answer
"function not supported". Status in AH, CF set on error.
"""

from __future__ import annotations

from nbdboot.machine.cpu import FLAG_CF

SUCCESSFUL = 0x00
FUNC_NOT_SUPPORTED = 0x81
BAD_VENDOR_ID = 0x83
DEVICE_NOT_FOUND = 0x86
BAD_REGISTER_NUMBER = 0x87
PCI_SIGNATURE = 0x20494350  # "PCI "


def _functions(pci):
    """(bus, devfn, function) in bus order."""
    return sorted(((bus, (dev << 3) | fn, f) for (bus, dev, fn), f in pci.functions.items()))


def int1a_pci(machine) -> None:
    cpu = machine.cpu
    pci = machine.pci
    al = cpu.get("al")
    status = SUCCESSFUL
    if al == 0x01:
        cpu.set("edx", PCI_SIGNATURE)
        cpu.set("ax", 0x0001)     # AH=00h present, AL: configuration mechanism #1
        cpu.set("bx", 0x0210)     # version 2.10
        cpu.set("cl", max(bus for bus, _, _ in pci.functions))
        cpu.set("edi", 0)         # no protected-mode entry point
        cpu.set_frame_flags(0, FLAG_CF)
        return
    if al == 0x02:
        vendor, device, index = cpu.get("dx"), cpu.get("cx"), cpu.get("si")
        if vendor == 0xFFFF:
            status = BAD_VENDOR_ID
        else:
            status = _find(cpu, [(bus, devfn) for bus, devfn, f in _functions(pci)
                                 if f.read(0, 2) == vendor and f.read(2, 2) == device], index)
    elif al == 0x03:
        class_code, index = cpu.get("ecx") & 0xFFFFFF, cpu.get("si")
        status = _find(cpu, [(bus, devfn) for bus, devfn, f in _functions(pci)
                             if f.read(9, 3) == class_code], index)
    elif al in (0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D):
        size = {0x08: 1, 0x09: 2, 0x0A: 4, 0x0B: 1, 0x0C: 2, 0x0D: 4}[al]
        bus, devfn, register = cpu.get("bh"), cpu.get("bl"), cpu.get("di")
        if register > 256 - size or register % size:
            status = BAD_REGISTER_NUMBER
        elif al <= 0x0A:
            value = pci.read_config(bus, devfn, register, size)
            cpu.set({1: "cl", 2: "cx", 4: "ecx"}[size], value)
        else:
            value = cpu.get({1: "cl", 2: "cx", 4: "ecx"}[size])
            pci.write_config(bus, devfn, register, size, value)
    else:
        status = FUNC_NOT_SUPPORTED
    cpu.set("ah", status)
    cpu.set_frame_flags(FLAG_CF if status else 0, 0 if status else FLAG_CF)


def _find(cpu, matches, index: int) -> int:
    if index >= len(matches):
        return DEVICE_NOT_FOUND
    bus, devfn = matches[index]
    cpu.set("bh", bus)
    cpu.set("bl", devfn)
    return SUCCESSFUL
