"""The guest crash report: where the CPU stopped, its registers, the code around
CS:IP and the last interrupts taken."""

from __future__ import annotations

from capstone import CS_ARCH_X86, CS_MODE_16, CS_MODE_32, Cs


def disassemble(cpu, at: int, before: int = 16, after: int = 24) -> list[str]:
    """Instructions around linear address `at`. Backwards x86 decoding is ambiguous,
    so start a little earlier and keep the first decode path that lands on `at`."""
    mode = CS_MODE_32 if cpu.protected and not cpu.v86 and _code32(cpu) else CS_MODE_16
    md = Cs(CS_ARCH_X86, mode)
    for back in range(before, -1, -1):
        start = max(0, at - back)
        try:
            code = cpu.read_linear(start, (at - start) + after)  # through the guest's page tables
        except Exception:  # noqa: BLE001 - unmapped: show what we can
            continue
        insns = list(md.disasm(code, start))
        if back and not any(i.address == at for i in insns):
            continue
        lines = []
        for i in insns:
            mark = "=>" if i.address == at else "  "
            lines.append(f"{mark} {i.address:08x}  {i.bytes.hex():<16} {i.mnemonic} {i.op_str}".rstrip())
        return lines
    return [f"   {at:08x}  (memory not readable)"]


def _code32(cpu) -> bool:
    desc = cpu._descriptor(cpu.get("cs"))
    return bool(desc and desc[3] & 0x4)


def crash_report(machine, at: int | None = None) -> str:
    cpu = machine.cpu
    r = cpu.registers()
    mode = cpu.mode()
    pc = cpu.pc() if at is None else at
    out = [
        f"CS:IP {r['cs']:04x}:{r['eip']:04x} (linear {pc:#x}, {mode})",
        "EAX={eax:08x} EBX={ebx:08x} ECX={ecx:08x} EDX={edx:08x}".format(**r),
        "ESI={esi:08x} EDI={edi:08x} EBP={ebp:08x} ESP={esp:08x}".format(**r),
        "DS={ds:04x} ES={es:04x} SS={ss:04x} FS={fs:04x} GS={gs:04x} EFLAGS={eflags:08x} CR0={cr0:08x}".format(**r),
        "code:",
    ]
    out += ["  " + line for line in disassemble(cpu, pc)]
    if r["cr0"] & 0x80000000:
        try:
            walk = cpu.linear.walk(pc)
            out.append("paging for CS:EIP: " + ", ".join(f"{lvl} {val:#x} at {adr:#x}" for lvl, adr, val in walk))
        except Exception:  # noqa: BLE001 - the report must not fail
            pass
    out.append("last interrupts (oldest first):")
    for vector, kind, cs, ip, eax in machine.history:
        out.append(f"  {kind:<9} {vector:02x}h at {cs:04x}:{ip:04x} EAX={eax:08x}")
    return "\n".join(out)
