"""The guest crash report: where the CPU stopped, its registers, the code around
CS:IP and the last interrupts taken."""

from __future__ import annotations

from capstone import CS_ARCH_X86, CS_MODE_16, CS_MODE_32, Cs


def disassemble(cpu, at: int, before: int = 16, after: int = 24) -> list[str]:
    """Instructions around linear address `at`, read through the guest's page tables. Backwards x86
    decoding is ambiguous: decode from every start up to `before` bytes earlier, keep the paths that
    land on `at`, and show the longest one from the first instruction that most of them agree on (a
    start in the middle of an instruction soon falls into step with the others). Bytes that do not
    decode are shown raw."""
    mode = CS_MODE_32 if cpu.protected and not cpu.v86 and _code32(cpu) else CS_MODE_16
    md = Cs(CS_ARCH_X86, mode)
    try:
        code = cpu.read_linear(at, after)
    except Exception:  # noqa: BLE001 - unmapped
        return [f"   {at:08x}  (memory not readable)"]
    ahead = list(md.disasm(code, at))
    paths = []
    for back in range(before, 0, -1):
        start = max(0, at - back)
        try:
            lead = list(md.disasm(cpu.read_linear(start, at - start), start))
        except Exception:  # noqa: BLE001 - unmapped: fewer bytes before
            continue
        if lead and lead[-1].address + lead[-1].size == at:
            paths.append(lead)
    lead = []
    if paths:
        votes: dict[int, int] = {}
        for path in paths:
            for insn in path:
                votes[insn.address] = votes.get(insn.address, 0) + 1
        longest = max(paths, key=len)
        agreed = [i for i, insn in enumerate(longest) if votes[insn.address] * 2 > len(paths)]
        lead = longest[agreed[0]:] if agreed else longest[-1:]
    lines = [f"   {i.address:08x}  {i.bytes.hex():<16} {i.mnemonic} {i.op_str}".rstrip() for i in lead]
    for i in ahead:
        mark = "=>" if i.address == at else "  "
        lines.append(f"{mark} {i.address:08x}  {i.bytes.hex():<16} {i.mnemonic} {i.op_str}".rstrip())
    decoded_to = ahead[-1].address + ahead[-1].size if ahead else at
    if decoded_to < at + after:
        raw = code[decoded_to - at:decoded_to - at + 8]
        mark = "=>" if decoded_to == at else "  "
        lines.append(f"{mark} {decoded_to:08x}  {raw.hex():<16} (not decodable as {16 if mode == CS_MODE_16 else 32}-bit code)")
    return lines


def _code32(cpu) -> bool:
    desc = cpu._descriptor(cpu.get("cs"))
    return bool(desc and desc[3] & 0x4)


def crash_report(machine, at: int | None = None) -> str:
    cpu = machine.cpu
    r = cpu.registers()
    mode = cpu.mode()
    pc = cpu.pc() if at is None else at
    # The header names the instruction the report is about (a hlt, an int that faulted), as the
    # code listing does; EIP itself is in the register lines.
    ip = (pc - cpu.seg_base(r["cs"])) & 0xFFFFFFFF
    out = [
        f"CS:IP {r['cs']:04x}:{ip:04x} (linear {pc:#x}, {mode})",
        "EAX={eax:08x} EBX={ebx:08x} ECX={ecx:08x} EDX={edx:08x}".format(**r),
        "ESI={esi:08x} EDI={edi:08x} EBP={ebp:08x} ESP={esp:08x}".format(**r),
        "DS={ds:04x} ES={es:04x} SS={ss:04x} FS={fs:04x} GS={gs:04x} EIP={eip:08x} EFLAGS={eflags:08x} CR0={cr0:08x}".format(**r),
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
