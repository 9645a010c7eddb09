"""Traces: every instruction executed in a range (--trace exec), every interrupt
taken (--trace int) and every BIOS call served (--log bios).

Each is attached only when asked for, so a run without them pays nothing: the
instruction trace is a Unicorn code hook on its range alone, the interrupt trace
watches the machine's interrupt history (one record per interrupt, which the
machine keeps anyway for crash reports), and the BIOS log wraps the services in
the machine's trap table.
"""

from __future__ import annotations

import collections
import time

from capstone import CS_ARCH_X86, CS_MODE_16, CS_MODE_32, Cs
from unicorn import UC_HOOK_CODE

from nbdboot.debug.inspect import bios_service
from nbdboot.machine import rom
from nbdboot.machine.cpu import RegBatch

TRACED = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eflags", "cs", "ds", "es", "ss", "fs", "gs",
          "eip", "cr0")
_EIP, _CR0 = TRACED.index("eip"), TRACED.index("cr0")
_CS = TRACED.index("cs")
FLAG_VM = 0x20000


def parse_range(text: str) -> tuple[int, int]:
    """`START-END` in hex (linear, END inclusive), e.g. 7c00-7dff."""
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"not a range: {text!r} (START-END, hex linear addresses)")
    low, high = int(start, 16), int(end, 16)
    if low > high:
        raise ValueError(f"empty range: {text!r}")
    return low, high


class ExecTrace:
    """One line per instruction executed in [start, end]: CS:IP, linear address, bytes, disassembly, then
    the registers it changed (seen when the next traced instruction starts)."""

    def __init__(self, machine, out, start: int = 0, end: int = 0xFFFFFFFF):
        self.machine = machine
        self.out = out
        self.regs = RegBatch(machine.cpu, TRACED)
        self.cs16 = Cs(CS_ARCH_X86, CS_MODE_16)
        self.cs32 = Cs(CS_ARCH_X86, CS_MODE_32)
        self.decoded: dict[tuple[int, bytes, bool], str] = {}
        self.pending: str | None = None
        self.before: tuple[int, ...] | None = None
        self.count = 0
        uc = machine.cpu.uc
        self.handle = uc.hook_add(UC_HOOK_CODE, self._on_code, None, start, end)
        uc.ctl_flush_tb()  # code translated before the hook would not call it

    def _on_code(self, uc, address, size, _user) -> None:
        # Traced code runs a hundred times slower: end the slice on time here (a code hook stops before its
        # instruction, precisely), or a count-limited slice of a million instructions would take half a minute.
        if time.perf_counter() >= getattr(self.machine, "_slice_deadline", float("inf")) \
                and self.machine.stop_reason is None:
            self.machine.stop("deadline")
            return
        values = self.regs.read()
        self._emit(values)
        self.count += 1
        cr0, eflags = values[_CR0], values[TRACED.index("eflags")]
        code32 = bool(cr0 & 1) and not eflags & FLAG_VM and self._code32(values[_CS])
        raw = bytes(uc.mem_read(address, size))
        key = (address, raw, code32)
        text = self.decoded.get(key)
        if text is None:
            insn = next((self.cs32 if code32 else self.cs16).disasm(raw, address), None)
            text = f"{insn.mnemonic} {insn.op_str}".strip() if insn else "(bad)"
            if len(self.decoded) > 100_000:
                self.decoded.clear()
            self.decoded[key] = text
        eip = values[_EIP] if code32 else values[_EIP] & 0xFFFF
        self.pending = f"{values[_CS]:04x}:{eip:0{8 if code32 else 4}x} {address:08x}  {raw.hex():<16} {text}"
        self.before = values

    def _code32(self, cs: int) -> bool:
        desc = self.machine.cpu._descriptor(cs)
        return bool(desc and desc[3] & 0x4)

    def _emit(self, values) -> None:
        if self.pending is None:
            return
        changed = []
        real = not values[_CR0] & 1
        for i, (name, old, new) in enumerate(zip(TRACED, self.before, values)):
            if old == new or i == _EIP:
                continue
            if real and i < 8 and old >> 16 == new >> 16:  # a general register: its 16-bit name
                changed.append(f"{name[1:]}={new & 0xFFFF:04x}")
            elif name in ("cs", "ds", "es", "ss", "fs", "gs"):
                changed.append(f"{name}={new:04x}")
            else:
                changed.append(f"{name}={new:08x}")
        line = self.pending
        if changed:
            line = f"{line:<60} ; {' '.join(changed)}"
        self.out.write(line + "\n")
        self.pending = None

    def close(self) -> None:
        if self.pending is not None:
            self.out.write(self.pending + "\n")
            self.pending = None
        try:
            self.machine.cpu.uc.hook_del(self.handle)
        except Exception:  # noqa: BLE001 - the machine may be gone already
            pass


class _ObservedHistory(collections.deque):
    """The machine's interrupt history, also handing each record to a tracer."""

    def __init__(self, items, maxlen, observer):
        super().__init__(items, maxlen)
        self.observer = observer

    def append(self, item) -> None:
        super().append(item)
        self.observer(item)


class InterruptTrace:
    """One line per interrupt taken: what (int/irq/exception/BIOS), from where, AX, and the handler."""

    def __init__(self, machine, out):
        self.machine = machine
        self.out = out
        self.count = 0
        self.original = machine.history
        machine.history = _ObservedHistory(machine.history, machine.history.maxlen, self._record)

    def _record(self, item) -> None:
        vector, kind, cs, ip, eax = item
        self.count += 1
        self.out.write(f"[{self.machine.clock.now:8.3f}] {kind:<9} {vector:02x}h at {cs:04x}:{ip:04x} "
                       f"AX={eax & 0xFFFF:04x} -> {self._handler(vector, kind)}\n")

    def _handler(self, vector: int, kind: str) -> str:
        cpu = self.machine.cpu
        if kind == "bios":
            return bios_service(self.machine, rom.ROM_BASE + rom.stub(vector)) or "BIOS"
        if cpu.get("cr0") & 1:
            try:
                _, base, limit, _ = cpu.uc.reg_read(_idtr())
                lo, hi = int.from_bytes(cpu.read(base + vector * 8, 4), "little"), \
                    int.from_bytes(cpu.read(base + vector * 8 + 4, 4), "little")
            except Exception:  # noqa: BLE001
                return "IDT unreadable"
            return f"IDT gate {lo >> 16:04x}:{(lo & 0xFFFF) | (hi & 0xFFFF0000):08x}"
        seg, off = cpu.ivt_entry(vector)
        linear = (seg << 4) + off
        owner = bios_service(self.machine, linear) or ("BIOS ROM" if linear >= rom.ROM_BASE else "guest")
        return f"{seg:04x}:{off:04x} ({owner})"

    def close(self) -> None:
        if isinstance(self.machine.history, _ObservedHistory):
            self.machine.history = collections.deque(self.machine.history, self.machine.history.maxlen)


def _idtr() -> int:
    from unicorn import x86_const
    return x86_const.UC_X86_REG_IDTR


class BiosLog:
    """One line per BIOS call served: the vector, the caller, AX BX CX DX before, AX and CF after.
    A call that waits (a blocking key read) is served again each time it is retried: logged once."""

    def __init__(self, machine, out):
        self.machine = machine
        self.out = out
        self.count = 0
        self._waiting = None
        self.wrapped: dict[int, tuple] = {}
        for linear, (vector, service) in list(machine.traps.items()):
            if service is None or linear != rom.ROM_BASE + rom.stub(vector):
                continue  # bare irets and the IRQ paths are not calls
            self.wrapped[linear] = (vector, service)
            machine.traps[linear] = (vector, self._wrap(vector, service))

    def _wrap(self, vector: int, service):
        def logged():
            cpu = self.machine.cpu
            before = (cpu.get("ax"), cpu.get("bx"), cpu.get("cx"), cpu.get("dx"))
            history = self.machine.history
            caller = history[-1] if history else None
            service()
            waiting = self.machine.stop_reason == "idle"
            signature = (vector, before, caller and caller[2:4])
            if waiting and signature == self._waiting:
                return
            self._waiting = signature if waiting else None
            try:
                cf = cpu.read16(cpu.frame_flags_addr()) & 1
            except Exception:  # noqa: BLE001
                cf = "?"
            where = f" from {caller[2]:04x}:{caller[3]:04x}" if caller else ""
            self.count += 1
            self.out.write(f"[{self.machine.clock.now:8.3f}] int {vector:02x}h AH={before[0] >> 8:02x}h "
                           f"AX={before[0]:04x} BX={before[1]:04x} CX={before[2]:04x} DX={before[3]:04x}{where}"
                           f" -> AX={cpu.get('ax'):04x} CF={cf}{' (waiting)' if waiting else ''}\n")
        logged.__qualname__ = getattr(service, "__qualname__", "service")
        return logged

    def close(self) -> None:
        for linear, entry in self.wrapped.items():
            self.machine.traps[linear] = entry
