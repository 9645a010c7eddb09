"""Views of the stopped machine for people: registers with segment bases, the IVT,
the stack, the screen; shared by gdb's `monitor` commands and --break's report."""

from __future__ import annotations

from nbdboot.console.screen import screen_lines
from nbdboot.machine.crash import disassemble
from nbdboot.machine import rom

SEGMENTS = ("cs", "ds", "es", "ss", "fs", "gs")
FLAG_NAMES = ((0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"), (10, "DF"),
              (11, "OF"), (14, "NT"), (16, "RF"), (17, "VM"))


def mode(cpu) -> str:
    if not cpu.get("cr0") & 1:
        return "real"
    return "virtual-8086" if cpu.get("eflags") & 0x20000 else "protected"


def linear_pc(cpu) -> int:
    if mode(cpu) != "protected":
        return (cpu.get("cs") << 4) + (cpu.get("eip") & 0xFFFF)
    return cpu.seg_base(cpu.get("cs")) + cpu.get("eip")


def registers(cpu) -> str:
    r = cpu.registers()
    flags = " ".join(name for bit, name in FLAG_NAMES if r["eflags"] >> bit & 1)
    real = mode(cpu) != "protected"
    bases = [f"{seg.upper()}={r[seg]:04x} base {((r[seg] << 4) if real else cpu.seg_base(r[seg])):08x}"
             for seg in SEGMENTS]
    _, gdt_base, gdt_limit, _ = cpu.uc.reg_read(_reg("GDTR"))
    _, idt_base, idt_limit, _ = cpu.uc.reg_read(_reg("IDTR"))
    ip = r["eip"] & 0xFFFF if real else r["eip"]
    return "\n".join([
        f"mode {mode(cpu)}  CS:IP {r['cs']:04x}:{ip:04x} (linear {linear_pc(cpu):#x})",
        "EAX={eax:08x} EBX={ebx:08x} ECX={ecx:08x} EDX={edx:08x}".format(**r),
        "ESI={esi:08x} EDI={edi:08x} EBP={ebp:08x} ESP={esp:08x}".format(**r),
        f"EFLAGS={r['eflags']:08x} [{flags}]  CR0={r['cr0']:08x}",
        "  ".join(bases[:3]),
        "  ".join(bases[3:]),
        f"GDTR base {gdt_base:08x} limit {gdt_limit:04x}  IDTR base {idt_base:08x} limit {idt_limit:04x}",
    ])


def _reg(name: str) -> int:
    from unicorn import x86_const
    return getattr(x86_const, f"UC_X86_REG_{name}")


def bios_service(machine, linear: int) -> str:
    """'BIOS int 13h' when `linear` is the entry of one of our ROM's services, else ''."""
    trap = machine.traps.get(linear)
    if trap is None:
        return ""
    vector, service = trap
    if service is None:
        return f"BIOS iret (int {vector:02x}h)"
    return f"BIOS int {vector:02x}h ({getattr(service, '__qualname__', 'service')})"


def ivt(machine, first: int, count: int = 1) -> str:
    cpu = machine.cpu
    lines = []
    for vector in range(first, min(first + count, 256)):
        seg, off = cpu.ivt_entry(vector)
        linear = (seg << 4) + off
        owner = bios_service(machine, linear) or ("BIOS ROM" if linear >= rom.ROM_BASE else "guest")
        lines.append(f"int {vector:02x}h -> {seg:04x}:{off:04x} (linear {linear:#07x}) {owner}")
    return "\n".join(lines)


def stack(cpu, words: int = 16) -> str:
    real = mode(cpu) != "protected"
    ss = cpu.get("ss")
    if real:
        base, sp, size, mask = ss << 4, cpu.get("sp"), 2, 0xFFFF
    else:
        base, size = cpu.seg_base(ss), 4 if cpu.stack_is_32bit() else 2
        mask = 0xFFFFFFFF if size == 4 else 0xFFFF
        sp = cpu.get("esp") & mask
    cells = []
    for i in range(words):
        at = (sp + i * size) & mask
        try:
            value = int.from_bytes(cpu.read(base + at, size), "little")
        except Exception:  # noqa: BLE001 - past the end of memory
            break
        cells.append(f"{value:0{size * 2}x}")
    rows = [f"  SS:{(sp + i * size) & mask:04x}  " + " ".join(cells[i:i + 8]) for i in range(0, len(cells), 8)]
    return "\n".join(rows)


def screen(cpu) -> str:
    return "\n".join(screen_lines(cpu)).rstrip("\n")


def interrupts(machine) -> str:
    return "\n".join(f"{kind:<9} {vector:02x}h at {cs:04x}:{ip:04x} EAX={eax:08x}"
                     for vector, kind, cs, ip, eax in machine.history)


def stop_report(machine, disklog=None, reads: int = 8) -> str:
    """Registers, code, stack and the last disk reads: what --break prints when it stops a run."""
    cpu = machine.cpu
    out = [registers(cpu), "code:"]
    out += ["  " + line for line in disassemble(cpu, linear_pc(cpu), before=8, after=16)]
    out += ["stack:", stack(cpu)]
    if disklog is not None:
        recent = list(disklog.recent)[-reads:]
        out.append(f"last int 13h calls ({len(recent)} of {disklog.calls}):")
        out += ["  " + line for line in recent]
    return "\n".join(out)


HELP = """monitor commands:
  regs          registers, mode, segment bases, CR0, GDTR/IDTR
  int13 [N]     the last N int 13h calls (default 20), naming the sectors read
  screen        the text screen
  ivt [N [M]]   interrupt vector N (hex), or M vectors from N
  stack [N]     N stack words at SS:SP (default 16)
  history       the last interrupts taken
  disk          where the disk's files are (the first 40 named extents of each drive)"""


def monitor_command(machine, text: str, disklog=None) -> str:
    words = text.split()
    if not words or words[0] == "help":
        return HELP + "\n"
    cmd, args = words[0], words[1:]
    cpu = machine.cpu
    try:
        if cmd == "regs":
            return registers(cpu) + "\n"
        if cmd == "int13":
            if disklog is None:
                return "the int 13h log is off\n"
            count = int(args[0]) if args else 20
            lines = list(disklog.recent)[-count:]
            return "\n".join(lines) + "\n" if lines else "no int 13h calls yet\n"
        if cmd == "screen":
            return screen(cpu) + "\n"
        if cmd == "ivt":
            first = int(args[0], 16) if args else 0
            count = int(args[1], 16) if len(args) > 1 else (1 if args else 0x20)
            return ivt(machine, first, count) + "\n"
        if cmd == "stack":
            return stack(cpu, int(args[0]) if args else 16) + "\n"
        if cmd == "history":
            return interrupts(machine) + "\n"
        if cmd == "disk" and disklog is not None:
            out = []
            for drive in list(machine.bios.disk.firmware.values()) + list(machine.bios.disk.san.values()):
                disk_map = disklog.disk_map(drive)
                out.append(f"drive {drive.number:02x}h ({drive.sector_size}-byte sectors):")
                if disk_map is None:
                    continue
                extents = sorted(e for level in disk_map.levels for e in level)[:40]
                out += [f"  LBA {e.start // drive.sector_size}+{-(-(e.end - e.start) // drive.sector_size)}"
                        f"  {e.label}" for e in extents]
            return "\n".join(out) + "\n"
    except (ValueError, IndexError) as e:
        return f"bad arguments for {cmd}: {e}\n"
    return f"unknown monitor command {cmd!r}\n" + HELP + "\n"
