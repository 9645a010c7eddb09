"""The x86 CPU: a Unicorn engine that behaves as a PC processor from reset.

The engine is UC_MODE_32 with CR0=0x10 (PE clear): it executes real-mode code
like a 16-bit CPU, yet stopping and resuming in protected mode at any EIP works,
which UC_MODE_16 cannot do (it truncates the resume address to 16 bits).

Unicorn delivers no interrupts itself, so this module does what the CPU's
microcode would: push a frame and vector through the IVT (real mode) or the IDT
(protected mode). Two rules keep the CPU state coherent:
- Python writes to guest memory go through `write()`, which drops translated
  code for the range; otherwise code loaded by int 13h over code that already
  ran (an MBR relocating itself, then loading a VBR) executes stale.
- While the engine runs (inside a hook) EFLAGS is written without its
  arithmetic bits: QEMU keeps those outside env->eflags during execution, and
  bits written there would be ORed into every later pushf. BIOS results travel
  in the FLAGS word of the caller's interrupt frame instead (set_frame_flags()).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import weakref

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_32, UC_PROT_ALL, Uc, UcError
from unicorn import x86_const as X

from nbdboot.machine.interrupts import Fault, LinearMemory
from nbdboot.machine.memmap import ADDRESS_SPACE_END, BDA, VGA_WINDOW, VIDEO_TEXT, VIDEO_TEXT_SIZE
from nbdboot.machine.tsc import TSC_HZ

try:  # the binding's per-call overhead dominates BIOS traps; call the C API directly
    from unicorn.unicorn_py3.unicorn import uclib as _uclib
except ImportError:  # pragma: no cover - other binding layouts
    _uclib = None

if _uclib is not None:
    # Our own function objects for the hottest calls, taking plain addresses: the
    # binding's argtypes (LP_c_char) force a buffer object per word read.
    _raw = ctypes.CDLL(_uclib._name)
    _ADDR_ARGS = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t)
    _raw_mem_read = _raw.uc_mem_read
    _raw_mem_read.argtypes = _ADDR_ARGS
    _raw_mem_write = _raw.uc_mem_write
    _raw_mem_write.argtypes = _ADDR_ARGS
    # Without argtypes, called with ctypes objects made once: ctypes then converts nothing per call
    # (a third of the cost of a register access from an interrupt hook).
    _bare = ctypes.CDLL(_uclib._name)
    _bare_reg_read, _bare_reg_write = _bare.uc_reg_read, _bare.uc_reg_write
    _bare_batch_read, _bare_batch_write = _bare.uc_reg_read_batch, _bare.uc_reg_write_batch

HMA_BASE = 0x100000  # where address line 20 starts to matter
HMA_SIZE = 0x10000
# Conventional memory, read and written by the BIOS straight in the host pages behind it: plain RAM
# at fixed host addresses (VGA windows and ROM start above it).
DIRECT_END = 0xA0000
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_MAP_FAILED = ctypes.c_void_p(-1).value


def _host_release(mappings, fd: int) -> None:
    for addr, size in mappings:
        _libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
    os.close(fd)


def _host_map(at: int | None, size: int, fd: int, offset: int) -> int:
    """mmap `size` bytes of `fd` from `offset`, shared; at host address `at` exactly if given."""
    flags = mmap.MAP_SHARED | (0x10 if at is not None else 0)  # MAP_FIXED
    addr = _libc.mmap(at, size, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, offset)
    if addr in (None, _MAP_FAILED):
        raise OSError(ctypes.get_errno(), "cannot map guest RAM")
    return addr

FLAG_CF = 0x0001
FLAG_PF = 0x0004
FLAG_ZF = 0x0040
FLAG_TF = 0x0100
FLAG_IF = 0x0200
FLAG_DF = 0x0400
ARITH_FLAGS = 0x08D5  # OF SF ZF AF PF CF

REG = {
    "eax": X.UC_X86_REG_EAX, "ebx": X.UC_X86_REG_EBX, "ecx": X.UC_X86_REG_ECX, "edx": X.UC_X86_REG_EDX,
    "esi": X.UC_X86_REG_ESI, "edi": X.UC_X86_REG_EDI, "ebp": X.UC_X86_REG_EBP, "esp": X.UC_X86_REG_ESP,
    "ax": X.UC_X86_REG_AX, "bx": X.UC_X86_REG_BX, "cx": X.UC_X86_REG_CX, "dx": X.UC_X86_REG_DX,
    "si": X.UC_X86_REG_SI, "di": X.UC_X86_REG_DI, "bp": X.UC_X86_REG_BP, "sp": X.UC_X86_REG_SP,
    "al": X.UC_X86_REG_AL, "ah": X.UC_X86_REG_AH, "bl": X.UC_X86_REG_BL, "bh": X.UC_X86_REG_BH,
    "cl": X.UC_X86_REG_CL, "ch": X.UC_X86_REG_CH, "dl": X.UC_X86_REG_DL, "dh": X.UC_X86_REG_DH,
    "cs": X.UC_X86_REG_CS, "ds": X.UC_X86_REG_DS, "es": X.UC_X86_REG_ES, "ss": X.UC_X86_REG_SS,
    "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS,
    "eip": X.UC_X86_REG_EIP, "eflags": X.UC_X86_REG_EFLAGS, "cr0": X.UC_X86_REG_CR0,
    "cr2": X.UC_X86_REG_CR2, "cr3": X.UC_X86_REG_CR3, "cr4": X.UC_X86_REG_CR4,
}
FLAG_VM = 0x20000
# CPUID bits this PC does not have (docs/machine.md): no local APIC (leaf 1 EDX 9) nor x2APIC (ECX 21);
# no SYSENTER/SYSEXIT (leaf 1 EDX 11, SEP) nor SYSCALL (80000001h EDX 11): the engine executes `sysenter`
# and `syscall` as no-ops (they only call its instruction hooks), so a kernel that chose them would run on
# in user mode. Linux's vDSO then enters with `int 80h`.
CPUID1_EDX_HIDDEN = (1 << 9) | (1 << 11)
CPUID1_ECX_HIDDEN = 1 << 21
CPUID_EXT_EDX_HIDDEN = (1 << 9) | (1 << 11)
# The TSC's rate as the CPU states it, as current Intel CPUs and hypervisors do (leaf 15h: TSC = crystal x
# EBX / EAX; leaf 16h: base MHz): Linux then takes the rate as known instead of measuring it against the
# PIT, a measurement that needs hundreds of PIT reads inside a few microseconds each, which port I/O
# through the emulator cannot give ("tsc: Unable to calibrate against PIT", the TSC marked unstable).
CPUID_MAX_BASIC = 0x16
CRYSTAL_HZ = 25_000_000
CPUID_TIME_LEAVES = {
    0x15: (1, TSC_HZ // CRYSTAL_HZ, CRYSTAL_HZ, 0),
    0x16: (TSC_HZ // 1_000_000, TSC_HZ // 1_000_000, 100, 0),
}


def _may_hold_code(addr: int, size: int) -> bool:
    """False for the BIOS data area and video memory: no code runs there, so a write
    need not drop translated code (BIOS services write both on most calls)."""
    end = addr + size
    return not (BDA <= addr and end <= BDA + 0x100 or VGA_WINDOW <= addr and end <= VIDEO_TEXT + VIDEO_TEXT_SIZE)


_FRAME = struct.Struct("<HHH")  # a real-mode interrupt frame: IP, CS, FLAGS

_MASKS = {name: 0xFF if name[-1] in "lh" and len(name) == 2 else
          0xFFFF if len(name) == 2 else 0xFFFFFFFF for name in REG}


class RegBatch:
    """A fixed list of registers read or written in one call into Unicorn
    (interrupt delivery runs thousands of times per boot; per-register calls dominate it)."""

    def __init__(self, cpu: "Cpu", names: tuple[str, ...]):
        self.cpu = cpu
        self.names = names
        self.masks = [_MASKS[name] for name in names]
        n = len(names)
        if cpu._fast:
            self._n = n
            self._ids = (ctypes.c_int * n)(*[REG[name] for name in names])
            self._vals = (ctypes.c_uint64 * n)()
            base = ctypes.addressof(self._vals)
            self._ptrs = (ctypes.c_void_p * n)(*[base + 8 * i for i in range(n)])
            self._c_read, self._c_write = _bare_batch_read, _bare_batch_write
            self._count = ctypes.c_int(n)
            layout = struct.Struct(f"<{n}Q")
            self._unpack, self._pack = layout.unpack_from, layout.pack_into
            # Unicorn fills only the register's width of each slot: mask the stale rest.
            # One tuple expression per batch: a generic zip() costs a microsecond per trap.
            masked = ", ".join(f"v[{i}] & {mask:#x}" for i, mask in enumerate(self.masks))
            self._masked = eval(f"lambda v: ({masked},)")  # noqa: S307 - built from our own constants

    def read(self) -> tuple[int, ...]:
        if not self.cpu._fast:
            return tuple(self.cpu.get(name) for name in self.names)
        self._c_read(self.cpu._uch, self._ids, self._ptrs, self._count)
        return self._masked(self._unpack(self._vals))

    def write(self, *values: int) -> None:
        if not self.cpu._fast:
            for name, value in zip(self.names, values):
                self.cpu.set(name, value)
            return
        self._pack(self._vals, 0, *[value & 0xFFFFFFFF for value in values])
        self._c_write(self.cpu._uch, self._ids, self._ptrs, self._count)


def _open_bus_read(uc, offset, size, _user):
    return (1 << (8 * size)) - 1


def _open_bus_write(uc, offset, size, value, _user):
    return None


_cpuid_engine = None


def _native_cpuid(leaf: int, sub: int) -> tuple[int, int, int, int]:
    """What the engine's CPU model answers for one leaf, asked of a scratch engine
    (a hook that skips cpuid cannot run the real one afterwards)."""
    global _cpuid_engine
    if _cpuid_engine is None:
        _cpuid_engine = Uc(UC_ARCH_X86, UC_MODE_32)
        _cpuid_engine.mem_map(0, 0x1000)
        _cpuid_engine.mem_write(0, b"\x0f\xa2")
    uc = _cpuid_engine
    uc.reg_write(X.UC_X86_REG_EAX, leaf)
    uc.reg_write(X.UC_X86_REG_ECX, sub)
    uc.emu_start(0, 2)
    return tuple(uc.reg_read(r) for r in (X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX))


class CpuFault(Exception):
    """The CPU cannot continue (no handler for an exception, bad IDT...)."""


class Cpu:
    def __init__(self, memory_size: int):
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self._map_memory(memory_size)
        self.memory_size = memory_size
        # The rest of the 4 GiB physical space is open bus, as on a PC: reads give all-ones,
        # writes vanish (a probe of F0000000h or of an absent local APIC must not kill the run).
        self.uc.mmio_map(memory_size, ADDRESS_SPACE_END - memory_size, _open_bus_read, None, _open_bus_write, None)
        self.uc.hook_add(UC_HOOK_INSN, self._on_cpuid, None, 1, 0, X.UC_X86_INS_CPUID)
        self._cpuid_cache: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        self.linear = LinearMemory(self)
        self._fast = _uclib is not None
        if self._fast:
            self._uch = self.uc._uch
            self._val = ctypes.c_uint64()
            self._ref = ctypes.byref(self._val)
            self._reg_ids = {name: ctypes.c_int(reg) for name, reg in REG.items()}
            self._c_mem_read = _uclib.uc_mem_read
            self._buf = ctypes.create_string_buffer(8)
            self._phys_buf = ctypes.create_string_buffer(256)
            self._u16, self._u32 = ctypes.c_uint16(), ctypes.c_uint32()
            self._u16_at, self._u32_at = ctypes.addressof(self._u16), ctypes.addressof(self._u32)
            self._frame = ctypes.create_string_buffer(6)
            self._frame_at = ctypes.addressof(self._frame)
            self._c_mem_write = _uclib.uc_mem_write
            self._c_ctl = _uclib.uc_ctl
            from unicorn import unicorn_const as uc_const
            # uc_ctl(UC_CTL_TB_REMOVE_CACHE, write, 2 args), encoded as the binding does
            self._remove_cache_code = (uc_const.UC_CTL_IO_WRITE << 30) | (2 << 26) | uc_const.UC_CTL_TB_REMOVE_CACHE
        self.env = None  # the CPU's internal state (interrupts.CpuEnv), set by the machine
        # Set by the machine while a BIOS service runs from the interrupt hook: it read SS:SP already.
        self.service_flags_at: int | None = None
        self.interrupt_regs = RegBatch(self, ("eip", "cs", "cr0", "eax", "eflags", "sp", "ss"))
        self._entry_regs = RegBatch(self, ("sp", "eflags", "cs", "eip"))
        self.reset()

    # -- memory map and the A20 gate -----------------------------------------------
    def _map_memory(self, memory_size: int) -> None:
        """RAM in three regions: the first MiB and the 64 KiB above it (the HMA) in host memory
        of our own, backed by one memory file, the rest from Unicorn. With A20 off the host pages
        behind the HMA are remapped onto the file's first 64 KiB, so FFFF:0010 reaches 0000:0000
        as on a PC. Unicorn keeps the same host addresses (no unmapping while the CPU runs, which
        crashes it) and the CPU's fast path is unchanged."""
        self._ram_fd = os.memfd_create("nbdboot-low-ram")
        os.ftruncate(self._ram_fd, HMA_BASE + HMA_SIZE)
        self._low_ptr = _host_map(None, HMA_BASE, self._ram_fd, 0)
        self._hma_ptr = _host_map(None, HMA_SIZE, self._ram_fd, HMA_BASE)
        self.uc.mem_map_ptr(0, HMA_BASE, UC_PROT_ALL, self._low_ptr)
        self.low = memoryview((ctypes.c_char * DIRECT_END).from_address(self._low_ptr)).cast("B")
        self.uc.mem_map_ptr(HMA_BASE, HMA_SIZE, UC_PROT_ALL, self._hma_ptr)
        if memory_size > HMA_BASE + HMA_SIZE:
            self.uc.mem_map(HMA_BASE + HMA_SIZE, memory_size - HMA_BASE - HMA_SIZE)
        self.a20 = True
        weakref.finalize(self, _host_release, ((self._low_ptr, HMA_BASE), (self._hma_ptr, HMA_SIZE)), self._ram_fd)

    def set_a20(self, enabled: bool) -> None:
        """Gate address line 20 (safe from a port hook). Only the HMA wraps (what real-mode code
        can reach); above it every MiB stays itself, which only a protected-mode guest with A20
        off could notice."""
        if enabled == self.a20:
            return
        _host_map(self._hma_ptr, HMA_SIZE, self._ram_fd, HMA_BASE if enabled else 0)
        self.a20 = enabled
        self._drop_code(0, HMA_SIZE)
        self._drop_code(HMA_BASE, HMA_SIZE)

    # -- state -------------------------------------------------------------------
    def reset(self) -> None:
        uc = self.uc
        uc.reg_write(X.UC_X86_REG_CR0, 0x10)
        uc.reg_write(X.UC_X86_REG_CR4, 0)
        for seg in ("cs", "ds", "es", "ss", "fs", "gs"):
            uc.reg_write(REG[seg], 0)
        uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2)
        uc.reg_write(X.UC_X86_REG_IDTR, (0, 0, 0xFFFF, 0))  # the real-mode IVT, as after a CPU reset

    def __getattr__(self, name):
        reg = REG.get(name)
        if reg is None:
            raise AttributeError(name)
        return self.uc.reg_read(reg)

    def get(self, name: str) -> int:
        if self._fast:
            _bare_reg_read(self._uch, self._reg_ids[name], self._ref)
            return self._val.value & _MASKS[name]
        return self.uc.reg_read(REG[name])

    def set(self, name: str, value: int) -> None:
        if self._fast:
            self._val.value = value & 0xFFFFFFFF
            _bare_reg_write(self._uch, self._reg_ids[name], self._ref)
            return
        self.uc.reg_write(REG[name], value)

    @property
    def protected(self) -> bool:
        return bool(self.get("cr0") & 1)

    @property
    def v86(self) -> bool:
        return bool(self.get("eflags") & FLAG_VM)

    def mode(self) -> str:
        """The CPU mode, for reports."""
        cr0 = self.get("cr0")
        if not cr0 & 1:
            return "real mode"
        mode = "virtual-8086 mode" if self.v86 else f"protected mode, CPL {self.get('cs') & 3}"
        return mode + (", paging" if cr0 & 0x80000000 else "")

    def seg_base(self, selector: int) -> int:
        if not self.protected or self.v86:
            return (selector & 0xFFFF) << 4
        desc = self._descriptor(selector)
        return desc[0] if desc else 0

    def _descriptor(self, selector: int):
        """(base, limit, access, flags) of a GDT/LDT selector, None if outside the table or unreadable."""
        if selector & 4:
            _, base, limit, _ = self.uc.reg_read(X.UC_X86_REG_LDTR)
        else:
            _, base, limit, _ = self.uc.reg_read(X.UC_X86_REG_GDTR)
        index = selector & ~7
        if (index == 0 and not selector & 4) or index + 7 > limit:
            return None
        try:
            lo, hi = struct.unpack("<II", self.read_linear(base + index, 8))
        except (Fault, UcError):
            return None
        seg_base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)
        seg_limit = (lo & 0xFFFF) | (hi & 0xF0000)
        return seg_base, seg_limit, (hi >> 8) & 0xFF, (hi >> 20) & 0xF

    def stack_is_32bit(self) -> bool:
        if not self.protected:
            return False
        desc = self._descriptor(self.get("ss"))
        return bool(desc and desc[3] & 0x4)

    def pc(self) -> int:
        """Linear address of CS:EIP, from CS's hidden base when the engine exposes it."""
        env = self.env
        if env is not None and env.available:
            return (env.code_base() + self.get("eip")) & 0xFFFFFFFF
        return self.seg_base(self.get("cs")) + self.get("eip")

    # -- memory ------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        return bytes(self.uc.mem_read(addr, size))

    def read_phys(self, addr: int, size: int) -> bytes:
        """Physical memory through the C API (raises UcError where no RAM is mapped)."""
        if not self._fast:
            return bytes(self.uc.mem_read(addr, size))
        if size > len(self._phys_buf):
            self._phys_buf = ctypes.create_string_buffer(size)
        if self._c_mem_read(self._uch, addr, self._phys_buf, size):
            raise UcError(6)  # UC_ERR_READ_UNMAPPED
        return self._phys_buf.raw[:size]

    def read_linear(self, addr: int, size: int) -> bytes:
        """Read a linear address range through the guest's page tables (raises interrupts.Fault)."""
        return self.linear.read(addr, size)

    def _on_cpuid(self, uc, _user) -> bool:
        """CPUID as the engine's model answers it, minus what this PC lacks (CPUID1_EDX_HIDDEN...)."""
        leaf, sub = self.get("eax"), self.get("ecx")
        key = (leaf, sub)
        values = self._cpuid_cache.get(key)
        if values is None:
            values = self._cpuid_cache[key] = self._leaf(leaf, sub)
        eax, ebx, ecx, edx = values
        if leaf == 1:
            edx &= ~CPUID1_EDX_HIDDEN
            ecx &= ~CPUID1_ECX_HIDDEN
        elif leaf == 0x80000001:
            edx &= ~CPUID_EXT_EDX_HIDDEN  # AMD models mirror the APIC bit here; SYSCALL
        for name, value in (("eax", eax), ("ebx", ebx), ("ecx", ecx), ("edx", edx)):
            self.set(name, value)
        return True  # skip the engine's own cpuid

    @staticmethod
    def _leaf(leaf: int, sub: int) -> tuple[int, int, int, int]:
        """The engine's answer, with the basic leaves extended to CPUID_MAX_BASIC: the time leaves, and
        zeros (nothing there) between its own last leaf and them."""
        native_max, vendor_b, vendor_c, vendor_d = _native_cpuid(0, 0)
        if leaf == 0:
            return max(native_max, CPUID_MAX_BASIC), vendor_b, vendor_c, vendor_d
        if native_max < leaf < 0x80000000:
            # Above the highest basic leaf a CPU answers with the highest one's values, as the engine does.
            return CPUID_TIME_LEAVES.get(min(leaf, CPUID_MAX_BASIC), (0, 0, 0, 0))
        return _native_cpuid(leaf, sub)

    def write(self, addr: int, data, code: bool = True) -> None:
        """Write guest memory; `code=False` for data no code can live in (interrupt frames)."""
        if not data:
            return
        data = bytes(data)
        if not self._fast:
            self.uc.mem_write(addr, data)
        elif self._c_mem_write(self._uch, addr, data, len(data)):
            raise UcError(7)  # UC_ERR_WRITE_UNMAPPED
        if code:
            self._drop_code(addr, len(data))

    def _drop_code(self, addr: int, size: int) -> None:
        """Forget code translated from [addr, addr+size), unless nothing runs there."""
        if not _may_hold_code(addr, size):
            return
        if self._fast:
            self._c_ctl(self._uch, self._remove_cache_code, ctypes.c_uint64(addr), ctypes.c_uint64(addr + size))
        else:
            self.uc.ctl_remove_cache(addr, addr + size)

    def _small_read(self, addr: int, size: int) -> bytes:
        if 0 <= addr and addr + size <= DIRECT_END:
            return bytes(self.low[addr:addr + size])
        if self._fast:
            if self._c_mem_read(self._uch, addr, self._buf, size):
                raise UcError(6)  # UC_ERR_READ_UNMAPPED
            return self._buf.raw[:size]
        return bytes(self.uc.mem_read(addr, size))

    def read8(self, addr: int) -> int:
        if 0 <= addr < DIRECT_END:
            return self.low[addr]
        return self._small_read(addr, 1)[0]

    def read16(self, addr: int) -> int:
        if 0 <= addr <= DIRECT_END - 2:
            return _U16.unpack_from(self.low, addr)[0]
        if self._fast:
            if _raw_mem_read(self._uch, addr, self._u16_at, 2):
                raise UcError(6)  # UC_ERR_READ_UNMAPPED
            return self._u16.value
        return int.from_bytes(self._small_read(addr, 2), "little")

    def read32(self, addr: int) -> int:
        if 0 <= addr <= DIRECT_END - 4:
            return _U32.unpack_from(self.low, addr)[0]
        if self._fast:
            if _raw_mem_read(self._uch, addr, self._u32_at, 4):
                raise UcError(6)  # UC_ERR_READ_UNMAPPED
            return self._u32.value
        return int.from_bytes(self._small_read(addr, 4), "little")

    def write8(self, addr: int, value: int, code: bool = True) -> None:
        self.write(addr, bytes((value & 0xFF,)), code)

    def write16(self, addr: int, value: int, code: bool = True) -> None:
        if not code and 0 <= addr <= DIRECT_END - 2:
            _U16.pack_into(self.low, addr, value & 0xFFFF)  # no code there: nothing translated to drop
            return
        if not self._fast:
            self.write(addr, struct.pack("<H", value & 0xFFFF), code)
            return
        self._u16.value = value & 0xFFFF
        if _raw_mem_write(self._uch, addr, self._u16_at, 2):
            raise UcError(7)  # UC_ERR_WRITE_UNMAPPED
        if code:
            self._drop_code(addr, 2)

    def write32(self, addr: int, value: int, code: bool = True) -> None:
        self.write(addr, struct.pack("<I", value & 0xFFFFFFFF), code)

    # -- interrupt frames --------------------------------------------------------
    def frame_flags_addr(self) -> int:
        """Where the caller's FLAGS sits while a real-mode BIOS stub runs."""
        if self.service_flags_at is not None:
            return self.service_flags_at
        return ((self.get("ss") & 0xFFFF) << 4) + ((self.get("sp") + 4) & 0xFFFF)

    def set_frame_flags(self, set_bits: int = 0, clear_bits: int = 0) -> None:
        addr = self.frame_flags_addr()
        self.write16(addr, (self.read16(addr) & ~clear_bits) | set_bits, code=False)

    def _write_flags_live(self, value: int, running: bool) -> None:
        if running:
            value &= ~ARITH_FLAGS
        self.set("eflags", value)

    def ivt_entry(self, vector: int) -> tuple[int, int]:
        entry = self.read32(vector * 4)
        return entry >> 16, entry & 0xFFFF

    def deliver_real(self, vector: int, return_ip: int, running: bool, cs: int | None = None,
                     target: tuple[int, int] | None = None) -> None:
        """What a real-mode `int` does: push FLAGS, CS, IP; clear IF/TF; load IVT[vector]
        (or `target`, the segment:offset already read from it)."""
        flags = self.get("eflags")
        if cs is None:
            cs = self.get("cs")
        sp = (self.get("sp") - 6) & 0xFFFF
        frame = struct.pack("<HHH", return_ip & 0xFFFF, cs, flags & 0xFFFF)
        ss_base = self.get("ss") << 4
        if sp <= 0xFFFA:
            self.write(ss_base + sp, frame, code=False)
        else:  # the frame wraps around the top of the stack segment
            for i in range(6):
                self.write(ss_base + ((sp + i) & 0xFFFF), frame[i:i + 1])
        self.set("sp", sp)
        seg, off = target or self.ivt_entry(vector)
        self._write_flags_live(flags & ~(FLAG_IF | FLAG_TF), running)
        self.set("cs", seg)
        self.set("eip", off)

    def deliver_protected(self, vector: int, return_eip: int, running: bool, error_code: int | None = None) -> None:
        """Deliver through the IDT to a ring-0 guest (no privilege change, no task gates)."""
        _, base, limit, _ = self.uc.reg_read(X.UC_X86_REG_IDTR)
        if vector * 8 + 7 > limit:
            raise CpuFault(f"vector {vector:#x} is outside the IDT (limit {limit:#x})")
        lo, hi = struct.unpack("<II", self.read(base + vector * 8, 8))
        gate_type = (hi >> 8) & 0x1F
        if not hi & 0x8000 or gate_type not in (0x06, 0x07, 0x0E, 0x0F):
            raise CpuFault(f"IDT entry {vector:#x} is not a present interrupt/trap gate ({hi:#010x})")
        selector = lo >> 16
        offset = (lo & 0xFFFF) | (hi & 0xFFFF0000)
        gate32 = bool(gate_type & 0x08)
        flags = self.uc.reg_read(X.UC_X86_REG_EFLAGS)
        cs = self.get("cs")
        ss_base = self.seg_base(self.get("ss"))
        if self.stack_is_32bit():
            sp, mask, sp_reg = self.get("esp"), 0xFFFFFFFF, "esp"
        else:
            sp, mask, sp_reg = self.get("sp"), 0xFFFF, "sp"
        words = [flags, cs, return_eip] + ([error_code] if error_code is not None else [])
        size = 4 if gate32 else 2
        for word in words:
            sp = (sp - size) & mask
            data = struct.pack("<I", word & 0xFFFFFFFF) if gate32 else struct.pack("<H", word & 0xFFFF)
            self.write(ss_base + sp, data)
        self.set(sp_reg, sp)
        new_flags = flags & ~(FLAG_TF | 0x4000 | 0x10000)  # TF, NT, RF
        if not gate_type & 1:
            new_flags &= ~FLAG_IF  # interrupt gate
        self._write_flags_live(new_flags, running)
        self.set("cs", selector)
        self.set("eip", offset if gate32 else offset & 0xFFFF)

    def enter_real(self, return_ip: int, cs: int, flags: int, sp: int, ss: int, seg: int, off: int) -> None:
        """deliver_real for the interrupt hook, from registers the hook already read:
        push the frame, clear IF/TF (and, while running, the arithmetic flags), jump to seg:off."""
        sp = (sp - 6) & 0xFFFF
        ss_base = ss << 4
        if sp <= 0xFFFA and ss_base + sp <= DIRECT_END - 6:
            # Straight into the stack's host page: a frame is data, never code the engine translated.
            _FRAME.pack_into(self.low, ss_base + sp, return_ip & 0xFFFF, cs, flags & 0xFFFF)
        elif sp <= 0xFFFA and self._fast:
            _FRAME.pack_into(self._frame, 0, return_ip & 0xFFFF, cs, flags & 0xFFFF)
            if _raw_mem_write(self._uch, ss_base + sp, self._frame_at, 6):
                raise UcError(7)  # UC_ERR_WRITE_UNMAPPED
        elif sp <= 0xFFFA:
            self.write(ss_base + sp, _FRAME.pack(return_ip & 0xFFFF, cs, flags & 0xFFFF), code=False)
        else:
            frame = _FRAME.pack(return_ip & 0xFFFF, cs, flags & 0xFFFF)
            for i in range(6):
                self.write(ss_base + ((sp + i) & 0xFFFF), frame[i:i + 1])
        self._entry_regs.write(sp, flags & ~(FLAG_IF | FLAG_TF | ARITH_FLAGS), seg, off)

    def deliver(self, vector: int, return_ip: int, running: bool) -> None:
        if self.protected:
            self.deliver_protected(vector, return_ip, running)
        else:
            self.deliver_real(vector, return_ip, running)

    def registers(self) -> dict[str, int]:
        return {name: self.get(name) for name in (
            "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp",
            "cs", "ds", "es", "ss", "fs", "gs", "eip", "eflags", "cr0")}
