"""Interrupt and exception delivery, as the CPU's microcode does it (Intel SDM vol. 3 ch. 6).

Unicorn runs guest code but never delivers an interrupt: its UC_HOOK_INTR reports
a vector and leaves CS:EIP where QEMU's translator put it, and QEMU's own
do_interrupt (IVT/IDT, frames, stack switch, task gates) never runs. This
module does that part, for real mode, 16- and 32-bit protected mode and
virtual-8086 mode.

What Unicorn tells us, and how we get the rest (measured on Unicorn 2.1.4):
- The hook sees `cpu->exception_index` only. QEMU's raise_interrupt2 has already
  stored `error_code`, `exception_is_int` and `exception_next_eip` in its
  CPUX86State; they are not registers, but a Unicorn context (uc_context_save)
  is a copy of that struct. `EnvLayout` finds their offsets once per process in
  a scratch engine, and `CpuEnv` reads them from a context saved in the hook.
  So a software `int n`/`int3`/`into` (exception_is_int=1, EIP after it) and a
  CPU exception with the same vector (EIP on the faulting instruction for a
  fault, after the instruction for a trap) are told apart exactly, in every
  mode, and the error code is the one QEMU computed (#PF from its page walk:
  P, W/R, U/S, RSVD, I/D; #GP/#NP/#SS/#TS with the selector and EXT/IDT/TI).
- QEMU's check_exception keeps `old_exception` until do_interrupt resets it,
  which never runs: after one #PF or contributory fault, the next one is turned
  into #DF and the one after that into a triple fault that ends emu_start as if
  by hlt. `CpuEnv.clear_old_exception` resets it after every CPU exception.
- Writing CS/SS with reg_write runs Unicorn's privilege checks against the
  current CPL (DPL of SS): a ring-3 -> ring-0 switch cannot be written. The CPL
  bits of hflags are set in a context first (`CpuEnv.force_cpl`), as the
  microcode loads the new CS with the new privilege.
- uc_emu_start translates its `until` address through the guest's page tables
  and the miss sets CR2 and old_exception; the machine runs with Unicorn's
  exit list enabled and empty instead (no `until`).

Every memory access of a delivery (IVT, IDT, GDT/LDT, TSS, stacks) goes through
`LinearMemory`, which walks the guest's page tables when CR0.PG=1 (4 KiB and
4 MiB pages with CR4.PSE, PAE) and raises #PF as the CPU would. A fault during
delivery is delivered in turn (benign/contributory/#PF classes), #DF when the
SDM says so, and a fault while delivering #DF is a triple fault: `TripleFault`,
which the machine turns into a crash report.
"""

from __future__ import annotations

import ctypes
import struct

from unicorn import UcError
from unicorn import x86_const as X

FLAG_CF = 0x0001
FLAG_TF = 0x0100
FLAG_IF = 0x0200
FLAG_IOPL = 0x3000
FLAG_NT = 0x4000
FLAG_RF = 0x10000
FLAG_VM = 0x20000
ARITH_FLAGS = 0x08D5

CR0_PE = 0x1
CR0_TS = 0x8
CR0_WP = 0x10000
CR0_PG = 0x80000000
CR4_PSE = 0x10
CR4_PAE = 0x20

DE, DB, NMI, BP, OF, BR, UD, NM, DF, TS, NP, SS, GP, PF, MF, AC = 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17
NAMES = {0: "#DE divide error", 1: "#DB debug", 2: "NMI", 3: "#BP breakpoint", 4: "#OF overflow",
         5: "#BR bound range", 6: "#UD invalid opcode", 7: "#NM no math coprocessor", 8: "#DF double fault",
         10: "#TS invalid TSS", 11: "#NP segment not present", 12: "#SS stack fault",
         13: "#GP general protection", 14: "#PF page fault", 16: "#MF x87 error", 17: "#AC alignment check",
         18: "#MC machine check", 19: "#XM SIMD error"}
WITH_ERROR_CODE = frozenset((DF, TS, NP, SS, GP, PF, AC, 21))
CONTRIBUTORY = frozenset((DE, TS, NP, SS, GP))
# Faults: EIP stays on the instruction, which runs again after the handler (#DB is a trap or a fault).
FAULTS = frozenset((DE, BR, UD, NM, TS, NP, SS, GP, PF, MF, AC, 19))

# Where an event comes from decides the DPL check (software only) and the EXT bit.
SOFTWARE = "int"        # int n, int3, into: gate DPL >= CPL is checked, EXT=0
EXCEPTION = "exception"  # a CPU exception: EXT=1 in the error code of a fault while delivering it
EXTERNAL = "irq"        # an IRQ: EXT=1

GATE_TASK, GATE_INT16, GATE_TRAP16, GATE_INT32, GATE_TRAP32 = 0x5, 0x6, 0x7, 0xE, 0xF


class Fault(Exception):
    """A CPU exception raised while delivering (or found by a page walk)."""

    def __init__(self, vector: int, error_code: int | None, detail: str, cr2: int | None = None):
        super().__init__(f"{NAMES.get(vector, hex(vector))}"
                         + (f" error code {error_code:#x}" if error_code is not None else "") + f": {detail}")
        self.vector = vector
        self.error_code = error_code
        self.detail = detail
        self.cr2 = cr2


class TripleFault(Exception):
    """A fault while delivering #DF (or a real-mode delivery with no usable IVT): the CPU shuts down."""


# -- Unicorn's CPUX86State, read through contexts --------------------------------------------------------


class EnvLayout:
    """Offsets (in a uc_context blob) of the QEMU CPUX86State fields the hook needs, found by
    running known instructions in a scratch engine: robust to the struct's layout."""

    hflags: int
    error_code: int
    is_int: int
    next_eip: int
    old_exception: int
    size: int
    _cached: "EnvLayout | None | bool" = False

    @classmethod
    def get(cls) -> "EnvLayout | None":
        if cls._cached is False:
            try:
                cls._cached = cls._calibrate()
            except (UcError, ValueError, AssertionError):
                cls._cached = None
        return cls._cached  # type: ignore[return-value]

    @classmethod
    def _calibrate(cls) -> "EnvLayout":
        from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map(0, 0x10000)
        gdt = b"\0" * 8 + _desc(0, 0xFFFFF, 0x9A, 0xC) + _desc(0, 0xFFFFF, 0x92, 0xC)
        uc.mem_write(0x500, gdt)
        # int 30h; mov ds,ax (AX=33h: outside the GDT -> #GP(30h)); hlt
        uc.mem_write(0x1000, bytes.fromhex("cd30" "8ed8" "f4"))
        uc.reg_write(X.UC_X86_REG_GDTR, (0, 0x500, len(gdt) - 1, 0))
        uc.reg_write(X.UC_X86_REG_CR0, 0x11)
        uc.reg_write(X.UC_X86_REG_CS, 8)
        for reg in (X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_SS):
            uc.reg_write(reg, 0x10)
        uc.reg_write(X.UC_X86_REG_ESP, 0x8000)
        uc.reg_write(X.UC_X86_REG_EAX, 0xA5C3_0033)
        base = bytes(uc.context_save())
        snaps = []

        def hook(uc, intno, _user):
            snaps.append((intno, uc.reg_read(X.UC_X86_REG_EIP), bytes(uc.context_save())))
            uc.reg_write(X.UC_X86_REG_EIP, 0x1002 if intno == 0x30 else 0x1004)

        uc.hook_add(UC_HOOK_INTR, hook)
        uc.ctl_exits_enabled(True)
        uc.ctl_set_exits([])
        uc.emu_start(0x1000, 0, count=10)
        assert [s[:2] for s in snaps] == [(0x30, 0x1002), (GP, 0x1002)], snaps
        soft, fault = snaps[0][2], snaps[1][2]
        layout = cls()
        layout.size = len(base)
        env = base.find(struct.pack("<I", 0xA5C3_0033))  # regs[R_EAX] opens the struct
        assert env > 0
        layout.hflags = env + 176  # regs[16], eip, eflags, cc_dst, cc_src, cc_src2, cc_op, df (x86_64 build)
        assert struct.unpack_from("<I", base, layout.hflags)[0] & 0x80  # HF_PE
        # error_code, exception_is_int, exception_next_eip are consecutive
        for off in range(env, len(base) - 12, 4):
            _, int_s, next_s = struct.unpack_from("<iiI", soft, off)
            ec_f, int_f, next_f = struct.unpack_from("<iiI", fault, off)
            if int_s == 1 and next_s == 0x1002 and int_f == 0 and ec_f == 0x30 and next_f == 0x1002:
                layout.error_code, layout.is_int, layout.next_eip = off, off + 4, off + 8
                break
        else:
            raise ValueError("exception fields not found")
        for off in range(env, len(base) - 4, 4):
            if (struct.unpack_from("<i", base, off)[0] == -1 and struct.unpack_from("<i", soft, off)[0] == -1
                    and struct.unpack_from("<i", fault, off)[0] == GP):
                layout.old_exception = off
                break
        else:
            raise ValueError("old_exception not found")
        return layout


def _desc(base: int, limit: int, access: int, flags: int) -> bytes:
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       ((limit >> 16) & 0xF) | (flags << 4), base >> 24)


HF_INHIBIT_IRQ = 1 << 3  # QEMU's hflags bit for the one-instruction interrupt shadow


class CpuEnv:
    """Reads and patches QEMU's CPUX86State of one engine through a reusable context."""

    def __init__(self, cpu):
        self.cpu = cpu
        self.layout = None
        self._ctx = None
        self._ready = False  # found on first use: most boots never need it (12 ms)

    def _prepare(self) -> None:
        """Called from the interrupt hook the first time it needs the CPU state."""
        self._ready = True
        if not self.cpu._fast:
            return
        from unicorn.unicorn_py3.unicorn import uclib
        ctx = ctypes.c_void_p()
        if uclib.uc_context_alloc(self.cpu._uch, ctypes.byref(ctx)):
            return
        self._ctx = ctx
        self._save = uclib.uc_context_save
        self._restore = uclib.uc_context_restore
        self.layout = self._layout_from_this_engine() or EnvLayout.get()
        if self.layout is None:
            self._ctx = None

    def _layout_from_this_engine(self) -> "EnvLayout | None":
        """The layout EnvLayout measures (Unicorn 2.1's), checked against the event the hook is
        taking: QEMU's exception_next_eip is the current EIP for `int n` and faults alike. Saves
        the 12 ms of a scratch engine; anything unexpected falls back to it."""
        cpu = self.cpu
        eax = cpu.get("eax")
        cpu.set("eax", 0xA5C3_0033)
        self._save(cpu._uch, self._ctx)
        cpu.set("eax", eax)
        blob = ctypes.string_at(self._ctx.value, 6000)
        env = blob.find(struct.pack("<I", 0xA5C3_0033))
        if env <= 0:
            return None
        layout = EnvLayout()
        layout.hflags = env + 176
        layout.error_code = env + 5384
        layout.is_int, layout.next_eip = layout.error_code + 4, layout.error_code + 8
        layout.old_exception = env + 5496
        _, is_int, next_eip = struct.unpack_from("<iiI", blob, layout.error_code)
        old = struct.unpack_from("<i", blob, layout.old_exception)[0]
        flags = struct.unpack_from("<I", blob, layout.hflags)[0]
        if (is_int not in (0, 1) or next_eip != cpu.get("eip") or not -1 <= old < 32
                or bool(flags & 0x80) != bool(cpu.get("cr0") & 1)):  # HF_PE follows CR0.PE
            return None
        return layout

    @property
    def available(self) -> bool:
        if not self._ready:
            self._prepare()
        return self._ctx is not None

    def _snapshot(self) -> int:
        if not self.available:
            raise TripleFault("this Unicorn build does not expose the CPU state delivery needs")
        self._save(self.cpu._uch, self._ctx)
        return self._ctx.value

    def exception_state(self) -> tuple[int, bool]:
        """(error code, was a software int) of the event the hook reports."""
        at = self._snapshot()
        lay = self.layout
        return ctypes.c_int32.from_address(at + lay.error_code).value, bool(
            ctypes.c_int32.from_address(at + lay.is_int).value)

    def next_eip(self) -> int:
        """Where a software interrupt returns to (QEMU's exception_next_eip)."""
        at = self._snapshot()
        return ctypes.c_uint32.from_address(at + self.layout.next_eip).value

    def clear_old_exception(self) -> None:
        at = self._snapshot()
        ctypes.c_int32.from_address(at + self.layout.old_exception).value = -1
        self._restore(self.cpu._uch, self._ctx)

    def force_cpl(self, cpl: int) -> None:
        """Set the CPL QEMU checks segment loads against, as the microcode does before loading CS/SS."""
        at = self._snapshot()
        flags = ctypes.c_uint32.from_address(at + self.layout.hflags)
        if flags.value & 3 != cpl:
            flags.value = (flags.value & ~3) | cpl
            self._restore(self.cpu._uch, self._ctx)

    def write_eflags(self, value: int) -> None:
        """EFLAGS from inside a hook, arithmetic flags included: reg_write puts them in CC_SRC
        (where running code keeps them) but also in env->eflags, from where every later pushf
        would OR them back in; clear that copy, as QEMU does when it starts executing."""
        self.cpu.set("eflags", value)
        at = self._snapshot()
        eflags = ctypes.c_uint32.from_address(at + self.layout.hflags - 40)
        eflags.value &= ~(ARITH_FLAGS | 0x400)
        self._restore(self.cpu._uch, self._ctx)

    def interrupt_shadow(self) -> bool:
        """The instruction after `sti` or `mov ss`/`pop ss` is still to run, and no interrupt may
        come before it (QEMU's HF_INHIBIT_IRQ): `sti; sysexit`, `mov ss, ax; mov esp, ...`. QEMU ends
        the translation block at such an instruction, so a block stop can land right there."""
        at = self._snapshot()
        return bool(ctypes.c_uint32.from_address(at + self.layout.hflags).value & HF_INHIBIT_IRQ)

    def code_base(self) -> int:
        """CS's hidden base, where the CPU fetches from. It differs from what the selector says
        between a mode switch and the far jump that reloads CS (CR0.PE just cleared, CS still a
        protected-mode selector), where a block stop can land."""
        at = self._snapshot()
        return ctypes.c_uint64.from_address(at + self.layout.hflags + 40).value  # hflags2, segs[R_ES], .base

    def cpl(self) -> int:
        at = self._snapshot()
        return ctypes.c_uint32.from_address(at + self.layout.hflags).value & 3


# -- memory as the CPU sees it -------------------------------------------------------------------------


class LinearMemory:
    """Linear-address reads and writes through the guest's page tables (CR0.PG=1), raising
    #PF with the error code the CPU would push; physical when paging is off."""

    def __init__(self, cpu):
        self.cpu = cpu

    def _phys32(self, addr: int) -> int:
        try:
            return self.cpu.read32(addr)
        except UcError:
            return 0xFFFFFFFF  # open bus

    def _phys64(self, addr: int) -> int:
        return self._phys32(addr) | (self._phys32(addr + 4) << 32)

    def walk(self, linear: int) -> list[tuple[str, int, int]]:
        """The paging entries for `linear`: [(level, physical address, value)], for crash reports."""
        cpu = self.cpu
        cr3, cr4 = cpu.get("cr3"), cpu.get("cr4")
        out = []
        if cr4 & CR4_PAE:
            pdpte_at = (cr3 & 0xFFFFFFE0) + ((linear >> 30) & 3) * 8
            pdpte = self._phys64(pdpte_at)
            out.append(("PDPTE", pdpte_at, pdpte))
            if not pdpte & 1:
                return out
            pde_at = (pdpte & 0xFFFFFF000) + ((linear >> 21) & 0x1FF) * 8
            pde = self._phys64(pde_at)
            out.append(("PDE", pde_at, pde))
            if pde & 1 and not pde & 0x80:
                pte_at = (pde & 0xFFFFFF000) + ((linear >> 12) & 0x1FF) * 8
                out.append(("PTE", pte_at, self._phys64(pte_at)))
            return out
        pde_at = (cr3 & 0xFFFFF000) + (linear >> 22) * 4
        pde = self._phys32(pde_at)
        out.append(("PDE", pde_at, pde))
        if pde & 1 and not (pde & 0x80 and cr4 & CR4_PSE):
            pte_at = (pde & 0xFFFFF000) + ((linear >> 12) & 0x3FF) * 4
            out.append(("PTE", pte_at, self._phys32(pte_at)))
        return out

    def translate(self, linear: int, write: bool, user: bool, cr0: int | None = None) -> int:
        cpu = self.cpu
        if cr0 is None:
            cr0 = cpu.get("cr0")
        linear &= 0xFFFFFFFF
        if not cr0 & CR0_PG:
            return linear
        cr4 = cpu.get("cr4")
        entries = self.walk(linear)
        err = (2 if write else 0) | (4 if user else 0)
        rsvd_mask = 0
        if cr4 & CR4_PAE:
            rsvd_mask = 0x7FF0_0000_0000_0000 | 0x000F_FF00_0000_0000  # above a 40-bit MAXPHYADDR, NX unused
        for level, at, value in entries:
            if not value & 1:
                raise Fault(PF, err, f"{level} {value:#x} at {at:#x} not present for {linear:#010x}", cr2=linear)
            if value & rsvd_mask:
                raise Fault(PF, err | 9, f"{level} {value:#x} at {at:#x} has reserved bits set", cr2=linear)
        # rights: PDPTE (legacy PAE) carries none
        rights = [v for lvl, _a, v in entries if lvl != "PDPTE"]
        writable = all(v & 2 for v in rights)
        user_ok = all(v & 4 for v in rights)
        if user and not user_ok:
            raise Fault(PF, err | 1, f"supervisor page {linear:#010x} accessed from CPL 3 ({_show(entries)})",
                        cr2=linear)
        if write and not writable and (user or cr0 & CR0_WP):
            raise Fault(PF, err | 1, f"write to read-only page {linear:#010x} ({_show(entries)})", cr2=linear)
        # Accessed bits, and Dirty on the final entry for a write, as the CPU sets them.
        for i, (_lvl, at, value) in enumerate(entries):
            if _lvl == "PDPTE":
                continue
            new = value | 0x20 | (0x40 if write and i == len(entries) - 1 else 0)
            if new != value:
                cpu.write32(at, new & 0xFFFFFFFF)
        _lvl, _at, last = entries[-1]
        if _lvl == "PDE":  # large page
            if cr4 & CR4_PAE:
                return (last & 0xFFFE00000) | (linear & 0x1FFFFF)
            return (last & 0xFFC00000) | (linear & 0x3FFFFF)
        return (last & 0xFFFFFF000) | (linear & 0xFFF)

    def read(self, linear: int, size: int, user: bool = False) -> bytes:
        out = b""
        cr0 = self.cpu.get("cr0")
        if not cr0 & CR0_PG:
            try:
                return self.cpu.read_phys(linear & 0xFFFFFFFF, size)
            except UcError:
                pass  # open bus somewhere in the range: go page by page
        while size:
            chunk = min(size, 0x1000 - (linear & 0xFFF))
            phys = self.translate(linear, False, user, cr0)
            try:
                out += self.cpu.read(phys, chunk)
            except UcError:
                out += b"\xff" * chunk
            linear, size = linear + chunk, size - chunk
        return out

    def write(self, linear: int, data: bytes, user: bool = False, word: int = 4) -> None:
        cr0 = self.cpu.get("cr0")
        if not cr0 & CR0_PG:
            try:
                self.cpu.write(linear & 0xFFFFFFFF, data, code=False)
                return
            except UcError:
                pass
        # Translate every page first: a fault leaves memory untouched, as a frame push would.
        pieces = []
        at, rest = linear, data
        while rest:
            chunk = min(len(rest), 0x1000 - (at & 0xFFF))
            pieces.append((at, rest[:chunk]))
            at, rest = at + chunk, rest[chunk:]
        # Highest page first: pushes go down, so a fault names the first word the CPU would write.
        spans = []
        for at, part in reversed(pieces):
            top = at + max(len(part) - word, 0)  # the highest word of the piece, pushed first
            spans.append((self.translate(top, True, user, cr0) - (top - at), part))
        for phys, part in spans:
            try:
                self.cpu.write(phys, part, code=False)
            except UcError:
                pass  # open bus: writes are dropped

    def read16(self, linear: int, user: bool = False) -> int:
        return int.from_bytes(self.read(linear, 2, user), "little")

    def read32(self, linear: int, user: bool = False) -> int:
        return int.from_bytes(self.read(linear, 4, user), "little")


# -- descriptors -----------------------------------------------------------------------------------------


class Descriptor:
    __slots__ = ("selector", "lo", "hi", "at")

    def __init__(self, selector: int, lo: int, hi: int, at: int):
        self.selector, self.lo, self.hi, self.at = selector, lo, hi, at

    @property
    def base(self) -> int:
        return (self.lo >> 16) | ((self.hi & 0xFF) << 16) | (self.hi & 0xFF000000)

    @property
    def limit(self) -> int:
        limit = (self.lo & 0xFFFF) | (self.hi & 0xF0000)
        return (limit << 12) | 0xFFF if self.hi & 0x800000 else limit

    @property
    def type(self) -> int:
        return (self.hi >> 8) & 0x1F  # S bit included

    @property
    def dpl(self) -> int:
        return (self.hi >> 13) & 3

    @property
    def present(self) -> bool:
        return bool(self.hi & 0x8000)

    @property
    def is_code(self) -> bool:
        return self.type & 0x18 == 0x18

    @property
    def conforming(self) -> bool:
        return self.is_code and bool(self.type & 4)

    @property
    def is_writable_data(self) -> bool:
        return self.type & 0x1A == 0x12

    @property
    def big(self) -> bool:
        return bool(self.hi & 0x400000)

    def __str__(self) -> str:
        return (f"selector {self.selector:#06x} descriptor {self.hi:08x}:{self.lo:08x} at {self.at:#010x} "
                f"(base {self.base:#x} limit {self.limit:#x} type {self.type:#x} DPL {self.dpl}"
                f"{'' if self.present else ' not present'})")


# -- delivery -------------------------------------------------------------------------------------------


class _Mmr(ctypes.Structure):
    """Unicorn's uc_x86_mmr: a descriptor-table or segment register with its hidden part."""
    _fields_ = [("selector", ctypes.c_uint16), ("base", ctypes.c_uint64),
                ("limit", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class Interrupts:
    """Delivers software interrupts, CPU exceptions and IRQs in the CPU's current mode."""

    def __init__(self, cpu):
        self.cpu = cpu
        self.mem = LinearMemory(cpu)
        self.env = CpuEnv(cpu)
        self._mmr = _Mmr()
        self._mmr_ref = ctypes.byref(self._mmr)
        self._c_reg_read = None
        if cpu._fast:
            from unicorn.unicorn_py3.unicorn import uclib
            self._c_reg_read = uclib.uc_reg_read
        from nbdboot.machine.cpu import RegBatch
        self._state = RegBatch(cpu, ("eflags", "cs", "ss", "esp", "cr0"))

    # -- helpers ---------------------------------------------------------------------------
    def _reg_mmr(self, reg: int) -> tuple[int, int, int, int]:
        if self._c_reg_read is None:
            return self.cpu.uc.reg_read(reg)
        mmr = self._mmr
        self._c_reg_read(self.cpu._uch, reg, self._mmr_ref)
        return mmr.selector, mmr.base, mmr.limit, mmr.flags

    def descriptor(self, selector: int, ext: int, vector: int = GP) -> Descriptor:
        """The GDT/LDT descriptor of `selector`; `vector`(selector) if it lies outside its table."""
        if selector & 4:
            ldt_sel, base, limit, _ = self._reg_mmr(X.UC_X86_REG_LDTR)
            if not ldt_sel & 0xFFFC:
                raise Fault(vector, (selector & 0xFFFC) | ext, f"selector {selector:#06x} in a null LDT")
        else:
            _, base, limit, _ = self._reg_mmr(X.UC_X86_REG_GDTR)
        index = selector & 0xFFF8
        if index + 7 > limit:
            raise Fault(vector, (selector & 0xFFFC) | ext,
                        f"selector {selector:#06x} beyond its table (limit {limit:#x})")
        lo, hi = struct.unpack("<II", self.mem.read(base + index, 8))
        return Descriptor(selector, lo, hi, base + index)

    def cpl(self) -> int:
        if self.cpu.get("eflags") & FLAG_VM:
            return 3
        return self.cpu.get("cs") & 3  # CS.RPL is the CPL outside real mode

    # -- entry points ------------------------------------------------------------------------
    def deliver(self, vector: int, source: str, return_eip: int, error_code: int | None = None,
                running: bool = True, insn_length: int = 2) -> None:
        """Deliver one event, and the faults its delivery raises (#DF, triple fault) as the SDM says.
        For a software interrupt, `return_eip` is after the instruction and `insn_length` its length:
        a fault while delivering it is reported on the instruction."""
        chain: list[str] = []  # what went wrong, in order, for the crash report
        while True:
            try:
                self._deliver_once(vector, source, return_eip, error_code, running)
                return
            except Fault as fault:
                if fault.cr2 is not None:
                    self.cpu.set("cr2", fault.cr2)
                chain.append(f"{fault} (delivering {NAMES.get(vector, f'vector {vector:#x}')})")
                if vector == DF or len(chain) > 8:
                    raise TripleFault("; then ".join(chain)) from None
                if source == EXCEPTION and _double_fault(vector, fault.vector):
                    vector, source, error_code = DF, EXCEPTION, 0
                    continue
                if source == SOFTWARE:
                    return_eip -= insn_length
                vector, source, error_code = fault.vector, EXCEPTION, fault.error_code

    def _deliver_once(self, vector, source, return_eip, error_code, running):
        cpu = self.cpu
        cr0 = cpu.get("cr0")
        if not cr0 & CR0_PE:
            self._deliver_real(vector, return_eip, running)
            return
        self._deliver_protected(vector, source, return_eip, error_code, running)

    # -- real mode ---------------------------------------------------------------------------
    def _deliver_real(self, vector: int, return_ip: int, running: bool) -> None:
        cpu = self.cpu
        _, base, limit, _ = self._reg_mmr(X.UC_X86_REG_IDTR)
        if vector * 4 + 3 > limit:
            # The CPU raises #GP, which is outside the same table: a shutdown.
            raise TripleFault(f"real-mode vector {vector:#x} beyond the IVT limit {limit:#x} (IDTR base {base:#x})")
        entry = self.mem.read32(base + vector * 4)
        flags = cpu.get("eflags")
        cs, sp, ss = cpu.get("cs"), cpu.get("sp"), cpu.get("ss")
        frame = struct.pack("<HHH", return_ip & 0xFFFF, cs, flags & 0xFFFF)
        sp = (sp - 6) & 0xFFFF
        for i in range(6) if sp > 0xFFFA else (0,):
            part = frame[i:i + 1] if sp > 0xFFFA else frame
            self.mem.write((ss << 4) + ((sp + i) & 0xFFFF), part)
        cpu.set("sp", sp)
        new = flags & ~(FLAG_IF | FLAG_TF | FLAG_RF)
        cpu.set("eflags", new & ~ARITH_FLAGS if running else new)
        cpu.set("cs", entry >> 16)
        cpu.set("eip", entry & 0xFFFF)

    # -- protected and virtual-8086 mode ------------------------------------------------------
    def _deliver_protected(self, vector, source, return_eip, error_code, running):
        cpu = self.cpu
        ext = 0 if source == SOFTWARE else 1
        _, idt_base, idt_limit, _ = self._reg_mmr(X.UC_X86_REG_IDTR)
        if vector * 8 + 7 > idt_limit:
            raise Fault(GP, vector * 8 + 2 + ext, f"vector {vector:#x} beyond the IDT limit {idt_limit:#x}")
        gate_at = idt_base + vector * 8
        lo, hi = struct.unpack("<II", self.mem.read(gate_at, 8))
        gate = Descriptor(vector * 8, lo, hi, gate_at)
        kind = gate.type
        if kind not in (GATE_TASK, GATE_INT16, GATE_TRAP16, GATE_INT32, GATE_TRAP32):
            raise Fault(GP, vector * 8 + 2 + ext, f"IDT entry {vector:#x} at {gate_at:#010x} is not a gate "
                                                  f"({hi:08x}:{lo:08x})")
        eflags, cs, ss_sel, esp, _cr0 = self._state.read()
        v86 = bool(eflags & FLAG_VM)
        cpl = 3 if v86 else cs & 3
        if source == SOFTWARE and gate.dpl < cpl:
            raise Fault(GP, vector * 8 + 2, f"int {vector:#x} from CPL {cpl} through a DPL {gate.dpl} gate")
        if not gate.present:
            raise Fault(NP, vector * 8 + 2 + ext, f"IDT entry {vector:#x} ({hi:08x}:{lo:08x}) not present")
        if kind == GATE_TASK:
            self._task_gate(lo >> 16, ext, return_eip, eflags, error_code, vector)
            return
        selector = lo >> 16
        offset = (lo & 0xFFFF) | (hi & 0xFFFF0000)
        gate32 = bool(kind & 0x8)
        if not gate32:
            offset &= 0xFFFF
        if not selector & 0xFFFC:
            raise Fault(GP, ext, f"IDT entry {vector:#x} has a null code selector")
        code = self.descriptor(selector, ext)
        if not code.is_code or code.dpl > cpl:
            raise Fault(GP, (selector & 0xFFFC) | ext, f"gate {vector:#x} target: {code}")
        if not code.present:
            raise Fault(NP, (selector & 0xFFFC) | ext, f"gate {vector:#x} target: {code}")
        new_cpl = cpl if code.conforming else code.dpl
        if v86 and new_cpl != 0:
            raise Fault(GP, (selector & 0xFFFC) | ext, f"gate {vector:#x} from V86 mode to {code}")
        eip = return_eip
        size = 4 if gate32 else 2
        if new_cpl < cpl or v86:
            new_ss, new_esp, ss_desc = self._tss_stack(new_cpl, ext)
            words = []
            if v86:
                words += [cpu.get("gs"), cpu.get("fs"), cpu.get("ds"), cpu.get("es")]
            words += [ss_sel, esp, eflags, cs, eip]
            stack32 = ss_desc.big
            ss_base = ss_desc.base
            sp = new_esp
            user = False
        else:
            new_ss = None
            ss_desc = self.descriptor(ss_sel, ext, SS)
            stack32 = ss_desc.big
            ss_base = ss_desc.base
            sp = esp
            words = [eflags, cs, eip]
            user = cpl == 3
        if error_code is not None:
            words.append(error_code)
        mask = 0xFFFFFFFF if stack32 else 0xFFFF
        fmt = "<I" if gate32 else "<H"
        wmask = 0xFFFFFFFF if gate32 else 0xFFFF
        frame = b"".join(struct.pack(fmt, w & wmask) for w in reversed(words))
        sp = (sp - len(frame)) & mask
        if stack32:
            self.mem.write(ss_base + sp, frame, user, size)
        else:  # a 16-bit stack wraps at 64 KiB
            for i in range(0, len(frame), size):
                self.mem.write(ss_base + ((sp + i) & 0xFFFF), frame[i:i + size], user)
        # Commit: nothing below can fault.
        new_flags = eflags & ~(FLAG_TF | FLAG_NT | FLAG_RF | FLAG_VM)
        if kind in (GATE_INT16, GATE_INT32):
            new_flags &= ~FLAG_IF
        cpu.set("eflags", new_flags & ~ARITH_FLAGS if running else new_flags)
        if v86:
            for seg in ("ds", "es", "fs", "gs"):
                cpu.set(seg, 0)
        if new_cpl != cpl or v86:
            self._force_cpl(new_cpl)
        cpu.set("cs", (selector & 0xFFFC) | new_cpl)
        if new_ss is not None:
            cpu.set("ss", new_ss)
        if stack32:
            cpu.set("esp", sp)
        else:
            cpu.set("esp", (esp & 0xFFFF0000) | sp if new_ss is None else sp)
        cpu.set("eip", offset)

    def _force_cpl(self, cpl: int) -> None:
        if not self.env.available:
            raise TripleFault("privilege change needs Unicorn's CPU state, which this Unicorn build does not expose")
        self.env.force_cpl(cpl)

    def _tr(self) -> tuple[int, int, int, bool]:
        """(selector, base, limit, 32-bit) of the current TSS."""
        sel, base, limit, flags = self._reg_mmr(X.UC_X86_REG_TR)
        if not sel & 0xFFFC:
            raise Fault(TS, 0, "no task register loaded for a privilege change")
        desc = self.descriptor(sel, 0, TS)
        return sel, desc.base, desc.limit, bool(desc.type & 8)

    def _tss_stack(self, dpl: int, ext: int) -> tuple[int, int, Descriptor]:
        tr, base, limit, tss32 = self._tr()
        if tss32:
            at = 4 + 8 * dpl
            if at + 5 > limit:
                raise Fault(TS, (tr & 0xFFFC) | ext, f"TSS limit {limit:#x} too small for ring {dpl} stack")
            esp = self.mem.read32(base + at)
            ss = self.mem.read16(base + at + 4)
        else:
            at = 2 + 4 * dpl
            if at + 3 > limit:
                raise Fault(TS, (tr & 0xFFFC) | ext, f"TSS limit {limit:#x} too small for ring {dpl} stack")
            esp = self.mem.read16(base + at)
            ss = self.mem.read16(base + at + 2)
        if not ss & 0xFFFC:
            raise Fault(TS, ext, f"ring {dpl} SS in the TSS is null")
        try:
            desc = self.descriptor(ss, ext, TS)
        except Fault as fault:
            raise Fault(TS, (ss & 0xFFFC) | ext, fault.detail) from None
        if ss & 3 != dpl or desc.dpl != dpl or not desc.is_writable_data:
            raise Fault(TS, (ss & 0xFFFC) | ext, f"ring {dpl} stack: {desc}")
        if not desc.present:
            raise Fault(SS, (ss & 0xFFFC) | ext, f"ring {dpl} stack: {desc}")
        return ss, esp, desc

    def _task_gate(self, tss_sel: int, ext: int, return_eip: int, eflags: int, error_code, vector: int) -> None:
        """A task switch with CALL semantics: the old task is saved, the new one is linked to it and busy."""
        cpu = self.cpu
        if tss_sel & 4:
            raise Fault(TS, (tss_sel & 0xFFFC) | ext, "task gate selects the LDT")
        new = self.descriptor(tss_sel, ext)
        if new.type not in (0x01, 0x09):  # available 16/32-bit TSS
            raise Fault(GP, (tss_sel & 0xFFFC) | ext, f"task gate {vector:#x} target is not an available TSS: {new}")
        if not new.present:
            raise Fault(NP, (tss_sel & 0xFFFC) | ext, f"task gate {vector:#x} target: {new}")
        new32 = bool(new.type & 8)
        if new.limit < (0x67 if new32 else 0x2B):
            raise Fault(TS, (tss_sel & 0xFFFC) | ext, f"TSS limit too small: {new}")
        old_sel, old_base, _old_limit, old32 = self._tr()
        regs = {n: cpu.get(n) for n in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi",
                                        "es", "cs", "ss", "ds", "fs", "gs")}
        # read the new task's state before writing anything
        b = new.base
        if new32:
            raw = self.mem.read(b, 0x68)
            cr3 = struct.unpack_from("<I", raw, 0x1C)[0]
            eip, nflags = struct.unpack_from("<II", raw, 0x20)
            gprs = struct.unpack_from("<8I", raw, 0x28)
            segs = [v & 0xFFFF for v in struct.unpack_from("<6I", raw, 0x48)]
            ldt = struct.unpack_from("<H", raw, 0x60)[0]
        else:
            raw = self.mem.read(b, 0x2C)
            eip, nflags = struct.unpack_from("<HH", raw, 0x0E)
            gprs = struct.unpack_from("<8H", raw, 0x12)
            segs = list(struct.unpack_from("<4H", raw, 0x22)) + [0, 0]
            ldt = struct.unpack_from("<H", raw, 0x2A)[0]
            cr3 = None
        # save the old task
        if old32:
            state = struct.pack("<II8I6I", return_eip, eflags, *(regs[n] for n in (
                "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")),
                *(regs[n] for n in ("es", "cs", "ss", "ds", "fs", "gs")))
            self.mem.write(old_base + 0x20, state)
        else:
            state = struct.pack("<HH8H4H", return_eip & 0xFFFF, eflags & 0xFFFF, *(regs[n] & 0xFFFF for n in (
                "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")),
                *(regs[n] for n in ("es", "cs", "ss", "ds")))
            self.mem.write(old_base + 0x0E, state)
        self.mem.write(b, struct.pack("<H", old_sel))  # back link
        self.mem.write(new.at + 5, bytes([((new.hi >> 8) & 0xFF) | 0x02]))  # busy
        new_flags = nflags | FLAG_NT
        if cr3 is not None and cpu.get("cr0") & CR0_PG:
            cpu.set("cr3", cr3)
        cpu.uc.reg_write(X.UC_X86_REG_TR, (tss_sel, new.base, new.limit, (new.hi | 0x200) & 0x00F0FF00))
        if ldt & 0xFFFC:
            ldesc = self.descriptor(ldt, ext, TS)
            cpu.uc.reg_write(X.UC_X86_REG_LDTR, (ldt, ldesc.base, ldesc.limit, ldesc.hi & 0x00F0FF00))
        else:
            cpu.uc.reg_write(X.UC_X86_REG_LDTR, (0, 0, 0, 0))
        cpu.set("cr0", cpu.get("cr0") | CR0_TS)
        for name, value in zip(("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"), gprs):
            cpu.set(name, value)
        cpu.set("eflags", new_flags)
        if nflags & FLAG_VM:
            for name, value in zip(("es", "cs", "ss", "ds", "fs", "gs"), segs):
                cpu.set(name, value)
        else:
            self._force_cpl(segs[1] & 3)
            try:
                for name, value in zip(("cs", "ss", "ds", "es", "fs", "gs"),
                                       (segs[1], segs[2], segs[3], segs[0], segs[4], segs[5])):
                    cpu.set(name, value)
            except UcError:
                raise Fault(TS, (tss_sel & 0xFFFC) | ext, f"a segment of the new task is invalid: {segs}") from None
        cpu.set("eip", eip)
        if error_code is not None:
            ss_desc = self.descriptor(cpu.get("ss"), ext, SS)
            size = 4 if new32 else 2
            sp = (cpu.get("esp") - size) & (0xFFFFFFFF if ss_desc.big else 0xFFFF)
            self.mem.write(ss_desc.base + sp, struct.pack("<I" if new32 else "<H", error_code))
            cpu.set("esp", sp)


def _show(entries) -> str:
    return ", ".join(f"{level} {value:#x} at {at:#x}" for level, at, value in entries)


def _double_fault(first: int, second: int) -> bool:
    """SDM table 6-5: which second fault during delivery of the first is a double fault."""
    if first in CONTRIBUTORY:
        return second in CONTRIBUTORY
    if first == PF:
        return second in CONTRIBUTORY or second == PF
    return False
