"""Run one BIOS service alone against a machine's registers and memory, as its ROM stub would, without booting.

A machine is built and POSTed (IVT, BDA, disks) but never started: `call` loads the entry registers, lays
the caller's interrupt frame (IP, CS, FLAGS) on the stack where the stub would find it, calls the service's
dispatcher and returns the exit registers with the caller's FLAGS as `iret` would restore them.
"""

from __future__ import annotations

from nbdboot.bios.bda import Bda
from nbdboot.machine.cpu import FLAG_CF, FLAG_IF, FLAG_ZF
from nbdboot.machine.machine import Machine
from nbdboot.pc import PC

STACK_SEGMENT, STACK_TOP = 0x0000, 0x7000
CALLER_CS, CALLER_IP = 0x1234, 0x0100
REGISTERS = ("ax", "bx", "cx", "dx", "si", "di", "bp", "ds", "es",
             "eax", "ebx", "ecx", "edx", "al", "ah", "bl", "bh", "cl", "ch", "dl", "dh", "eip")
__all__ = ["FLAG_CF", "FLAG_IF", "FLAG_ZF", "call", "machine_at_rest", "check", "opposite_flags"]


def machine_at_rest(boot_drive: int = 0x80, attach=None, memory_mb: int = 2) -> Machine:
    """A POSTed machine that has run no instruction; `attach(machine)` adds its disks before POST."""
    machine = PC(memory_mb=memory_mb)
    if attach is not None:
        attach(machine)
    machine.bios.post(boot_drive)
    return machine


def call(machine: Machine, service, entry: dict, flags: int = 0x0002, memory: dict | None = None) -> dict:
    """Exit state of `service()` entered with `entry` registers and the caller's FLAGS `flags`:
    {register: value for every REGISTERS name, "flags": caller's FLAGS after iret}."""
    cpu = machine.cpu
    for addr, data in (memory or {}).items():
        cpu.write(addr, data)
    for name in ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "ds", "es"):
        cpu.set(name, 0)
    cpu.set("ss", STACK_SEGMENT)
    cpu.set("esp", STACK_TOP - 6)  # the stub's frame: IP, CS, FLAGS
    frame = (STACK_SEGMENT << 4) + STACK_TOP - 6
    cpu.write16(frame, CALLER_IP, code=False)
    cpu.write16(frame + 2, CALLER_CS, code=False)
    cpu.write16(frame + 4, flags, code=False)
    for name, value in entry.items():
        cpu.set(name, value)
    service()
    state = {name: cpu.get(name) for name in REGISTERS}
    state["flags"] = cpu.read16(frame + 4)
    return state


def opposite_flags(expected: dict, other: int = 0x0002) -> int:
    """Caller's FLAGS with CF the opposite of the expected exit CF, so a row checks that the call wrote it."""
    return other | (FLAG_CF if expected.get("cf") == 0 else 0)


def check(machine: Machine, state: dict, expected: dict) -> None:
    """Compare exit registers, FLAGS bits ("cf", "zf", "if": 0/1) and BDA fields ("bda.name") with `expected`."""
    bda = Bda(machine.cpu)
    bits = {"cf": FLAG_CF, "zf": FLAG_ZF, "if": FLAG_IF}
    got = {}
    for key in expected:
        if key in bits:
            got[key] = int(bool(state["flags"] & bits[key]))
        elif key.startswith("bda."):
            got[key] = getattr(bda, key[4:])
        elif key.startswith("mem:"):
            addr, size = (int(part, 16) for part in key[4:].split("+"))
            got[key] = machine.cpu.read(addr, size)
        else:
            got[key] = state[key]
    assert got == expected
