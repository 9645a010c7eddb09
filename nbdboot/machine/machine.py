"""The PC: CPU, memory map, ROM, devices, BIOS and the run loop.

Memory: RAM from 0 to 1 MiB + extended memory; the 64 KiB above 1 MiB (the HMA)
is remapped onto the first 64 KiB while the guest gates A20 off (machine/cpu.py).
Conventional memory ends at 9FC00h where the 1 KiB EBDA starts, text video memory
is the RAM at B8000h, the ROM image is copied to F0000h.

Traps: UC_HOOK_INTR sees every `int` and exception. An `int` executed at a
registered ROM address (a vector stub or the trap inside an IRQ path) is a BIOS
call served in Python; anything else is delivered through the guest's IVT or
IDT, so guests can hook and chain any vector.

Run loop: slices of about SLICE_SECONDS, ended only where Unicorn's state is
exact: at a software `int` once the slice's time is up (from the interrupt
hook), or at the start of the next translation block after the watchdog thread
armed the block stop (machine/slicing.py). Never by an asynchronous emu_stop.
Between slices the virtual clock advances, IRQ0 is raised at the PIT rate and
pending IRQs are delivered if the guest has interrupts on (or is waiting inside
a BIOS call, as a real BIOS would with sti). No per-instruction hooks.
"""

from __future__ import annotations

import collections
import ctypes
import struct
import threading
import time
import weakref

from unicorn import UC_ERR_FETCH_PROT, UC_ERR_FETCH_UNMAPPED, UC_HOOK_INSN, UC_HOOK_INSN_INVALID, UC_HOOK_INTR, UcError
from unicorn import x86_const as X

from nbdboot.errors import EXIT_GUEST_CRASH, EXIT_GUEST_RESET, EXIT_OK, NbdbootError
from nbdboot.machine import rom
from nbdboot.machine.clock import VirtualClock
from nbdboot.machine import interrupts as ints
from nbdboot.machine.cpu import FLAG_IF, Cpu
from nbdboot.machine.devices import (Cmos, DebugConsole, Keyboard8042, PciBus, Pic, Pit, PowerPorts,
                                     SystemControlA, SystemControlB, Vga)
from nbdboot.machine.devices.uart import COM_PORTS, Uart16550
from nbdboot.machine.memmap import EXTENDED_BASE
from nbdboot.machine.ports import PortBus
from nbdboot.machine.slicing import SliceStop
from nbdboot.machine.tsc import TimeStampCounter

DEFAULT_MEMORY_MB = 64
SLICE_SECONDS = 0.02  # wall time per slice; then the slice ends at the next safe point
SHADOW_SLICE_SECONDS = 0.001  # a slice that only has to get past an interrupt shadow
# A slice ends at the next PIT tick, but runs at least this long: a guest that programs the PIT faster than
# this gets its ticks owed and handed over one per slice start, not one slice per tick.
MIN_SLICE_SECONDS = 0.0005
CPU_EXCEPTIONS = range(0, 0x08)
HALT_POLL_SECONDS = 0.01  # a halted CPU with no timer event pending looks for input this often
RUNAWAY_ZEROS = 16  # this many zero bytes at CS:IP after a slice that did not end by itself: executing nothing
FLAG_VM = ints.FLAG_VM
# Vectors whose UC_HOOK_INTR report may be a CPU exception rather than `int n`. In real mode
# QEMU raises only #DE, #DB, #BR, #NM, #SS and #GP (no paging, no segment limits to speak of,
# #UD has its own hook, #AC needs CPL 3); #MF (10h) and #XM (13h) would need CR0.NE or SSE
# exceptions unmasked, and taking int 10h/13h for them would cost every BIOS call a probe.
# In protected and V86 mode any vector below 20h is asked about.
REAL_MODE_EXCEPTIONS = frozenset((0x00, 0x01, 0x05, 0x07, 0x0C, 0x0D))
# What an idle loop calls besides the keyboard: time, DOS idle, network idle, timer IRQs.
_ROM_STUB_ENTRY = [(rom.ROM_SEGMENT << 16) | rom.stub(vector) for vector in range(256)]

IDLE_LOOP_VECTORS = frozenset((0x08, 0x16, 0x1A, 0x1C, 0x28, 0x2A))


class GuestCrash(NbdbootError):
    exit_code = EXIT_GUEST_CRASH

    def __init__(self, message: str, report: str = ""):
        super().__init__(message)
        self.report = report


class GuestReset(NbdbootError):
    """The guest reset the PC and --no-reboot says a reset ends the run."""
    exit_code = EXIT_GUEST_RESET


class GuestPoweredOff(NbdbootError):
    """The guest turned the PC off: the run is over, successfully unless --expect text is missing."""
    exit_code = EXIT_OK


def _watch(machine_ref) -> None:
    """Arm the block stop when a slice has run SLICE_SECONDS without ending at a
    software int (a guest computing, or spinning, without interrupts), so timers
    and deadlines still work. Holds the machine weakly: the thread ends when the
    machine is gone."""
    while True:
        machine = machine_ref()
        if machine is None:
            return
        wait = machine._watchdog_check()
        moved = machine._deadline_moved
        del machine
        moved.wait(wait)   # a slice whose deadline came closer (an RTC tick due) wakes it early
        moved.clear()


class Machine:
    def __init__(self, firmware, memory_mb: int = DEFAULT_MEMORY_MB, debug_out=None):
        if not 1 <= memory_mb <= 3072:
            raise ValueError("memory must be between 1 and 3072 MiB")
        self.memory_mb = memory_mb
        self.extended_bytes = memory_mb * 1024 * 1024
        self.cpu = Cpu(EXTENDED_BASE + self.extended_bytes)
        self.clock = VirtualClock()
        self.tsc = TimeStampCounter(self.clock)
        self.vga = Vga(self.cpu)
        # The UARTs keep their line across a reset, as the display does (they are the user's view).
        self.serial = [Uart16550(base, irq, None, f"COM{i + 1}") for i, (base, irq) in enumerate(COM_PORTS)]
        self.debugcon = DebugConsole(debug_out)
        self._build_devices()
        self.traps: dict[int, tuple] = {}  # linear address -> (vector, service)
        self.history = collections.deque(maxlen=32)  # (vector, cs, ip, ax, kind)
        self.fault_states = collections.deque(maxlen=32)  # (vector, CR2 of a #PF, ECX, ESI, EDI) per fault
        self.stop_reason: str | None = None
        self.waiting_in_bios = False   # a BIOS call is waiting with interrupts on
        self.bios_window = False       # a BIOS service opened an sti window: the next IRQ goes in whatever IF
        self.halted = False            # hlt with IF=1: the CPU waits for an interrupt
        self.short_ivt: int | None = None  # a real-mode IDT limit below 3FFh, as of the last slice
        self.wake_time = float("inf")  # a timed BIOS wait (int 15h 86h) ends then
        self.idle_since: float | None = None  # virtual time the guest started idling
        self.failure: BaseException | None = None
        self.no_reboot = False          # --no-reboot: a reset ends the run instead
        self.powered_off: GuestPoweredOff | None = None  # the guest turned the PC off
        self.reset_request: tuple[str, str] | None = None  # (reason, crash report or "") until served
        self.resets: list[str] = []     # why the machine was reset, oldest first
        self._last_triple_fault: int | None = None  # linear address of the previous one (a reset loop)
        self.slices = 0
        self.irq_count = collections.Counter()
        self._slice_deadline = float("inf")
        self.shadowed = False       # an IRQ waits for the instruction in an interrupt shadow
        # An IRQ waits for IF=1 (a handler before its iret, a cli section): slices this long look again,
        # doubling up to SLICE_SECONDS while IF stays 0, so a long cli section pays little.
        self.masked_slice: float | None = None
        self._running_slice = 0     # slice number while emu_start runs, 0 otherwise
        self._watchdog: threading.Thread | None = None
        self._armed_at = 0.0        # when the watchdog armed the block stop
        self._arm_lock = threading.Lock()
        self._deadline_moved = threading.Event()
        self.cpu.write(rom.ROM_BASE, rom.load_image())
        self.interrupts = ints.Interrupts(self.cpu)
        self.cpu.env = self.interrupts.env

        # The firmware (nbdboot.bios.Bios; nbdboot.pc.PC passes it) is built on the machine it serves.
        self.bios = firmware(self)

        uc = self.cpu.uc
        self._slice_stop = SliceStop(uc)
        # No `until` address: Unicorn translates it through the guest's page tables, and the
        # miss sets CR2 and QEMU's pending-exception state behind the guest's back.
        uc.ctl_exits_enabled(True)
        uc.ctl_set_exits([])
        self._add_interrupt_hook()
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)
        self.tsc.install(uc)

    def _build_devices(self) -> None:
        """The chipset's devices in their power-on state, each on a fresh port bus (also at a reset).
        The display's devices and the debug console keep their state: they are the user's view."""
        self.pic = Pic()
        self.pit = Pit(self.clock)
        self.cmos = Cmos(self.clock, ext_kb=self.extended_bytes // 1024)
        self.cmos.raise_irq = self.pic.raise_irq
        self.cmos.on_schedule = self._end_slice_by
        self.pic.on_ready = self._end_slice_soon
        self.kbc = Keyboard8042(self)
        self.mouse = self.kbc.mouse
        self.pci = PciBus(self)
        self.ports = PortBus()
        for uart in self.serial:
            uart.pic = self.pic
            uart.clock = self.clock
        for device in (self.pic, self.pit, self.cmos, self.kbc, self.vga, self.debugcon, self.pci, *self.serial,
                       SystemControlA(self), SystemControlB(self.clock, self.pit), PowerPorts(self)):
            device.attach(self.ports)
        self.pit.on_channel0_change = self._reschedule_timer
        self.next_irq0 = self.pit.next_irq0(self.clock.now)

    # -- reset and power -------------------------------------------------------------
    def request_reset(self, reason: str, report: str = "") -> None:
        """Reset the PC as its reset line would (triple fault, 8042 pulse, port 92h, jump to F000:FFF0,
        int 19h): the CPU stops now and the reset happens between slices. `report` (a crash report) is
        kept for --no-reboot, where a reset ends the run. Safe to call from any hook."""
        if self.reset_request is None:
            self.reset_request = (reason, report)
        self.stop("reset")

    def triple_fault(self, message: str, at: int | None = None) -> None:
        """The CPU shut down (an exception it could not deliver): a PC's chipset resets it.
        `at`: linear address of the instruction that caused it, when EIP is already past it."""
        self.request_reset(f"triple fault in {self.cpu.mode()}: {message}", self.crash_report(at))

    def power_off(self, how: str) -> None:
        """The guest turned the PC off (APM, the Bochs/QEMU shutdown port): the run ends with exit 0."""
        self._fail(GuestPoweredOff(f"guest powered off ({how})"))

    def _serve_reset(self) -> None:
        reason, report = self.reset_request
        self.reset_request = None
        triple = reason.startswith("triple fault")
        if triple:
            pc = self.cpu.pc()
            if self._last_triple_fault == pc:
                raise GuestCrash(f"{reason}, again at the same address after a reset (a reset loop)",
                                 report or self.crash_report())
            self._last_triple_fault = pc
        if self.no_reboot:
            if triple:
                raise GuestCrash(f"{reason} (--no-reboot)", report or self.crash_report())
            raise GuestReset(f"guest reset the machine: {reason} (--no-reboot)")
        self.resets.append(reason)
        self.reset()

    def reset(self) -> None:
        """The reset line: CPU and chipset to their power-on state, RAM kept (as on a PC), POST again,
        boot again from the same drive through int 19h."""
        self.cpu.reset()
        for reg in ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp"):
            self.cpu.set(reg, 0)
        self.cpu.uc.reg_write(X.UC_X86_REG_GDTR, (0, 0, 0xFFFF, 0))
        self.cpu.set_a20(True)
        self.cpu.uc.ctl_flush_tb()
        self.tsc.reset()
        self._build_devices()
        self.history.clear()
        self.waiting_in_bios = self.bios_window = self.halted = False
        self.short_ivt = None
        self.wake_time = float("inf")
        self.cpu.write(rom.ROM_BASE, rom.load_image())
        self.bios.reset()
        self.power_on(self.bios.boot.boot_drive)

    def _add_interrupt_hook(self) -> None:
        """UC_HOOK_INTR straight through ctypes: the binding's two wrapper layers cost
        more than a third of a simple BIOS call, and a boot takes thousands."""
        uc = self.cpu.uc
        try:
            from unicorn.unicorn_py3 import unicorn as binding
            callback = binding.HOOK_INTR_CFUNC(self._raw_interrupt)
            handle = binding.uc_hook_h()
            status = binding.uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_INTR,
                                               ctypes.cast(callback, ctypes.c_void_p), None,
                                               ctypes.c_uint64(1), ctypes.c_uint64(0))
        except (ImportError, AttributeError):
            status = -1
        if status != 0:
            uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
            return
        self._raw_hook = (callback, handle)  # the C side keeps only a pointer

    def _raw_interrupt(self, _uch, intno, _user) -> None:
        try:
            self._on_interrupt(None, intno, None)
        except (NbdbootError, KeyboardInterrupt, SystemExit) as e:
            self._fail(e)
        except BaseException as e:  # noqa: BLE001 - ctypes would print and drop it
            self._fail(GuestCrash(f"internal error while taking interrupt {intno:#04x}: {type(e).__name__}: {e}"))

    # -- setup ---------------------------------------------------------------------
    def add_trap(self, offset: int, service) -> None:
        """Serve the `int` instruction at F000:offset with `service()`; None: a plain iret."""
        vector = self.cpu.read8(rom.ROM_BASE + offset + 1)
        self.traps[rom.ROM_BASE + offset] = (vector, service)

    def power_on(self, boot_drive: int) -> None:
        """POST (IVT, BDA, EBDA, screen) and start at the reset vector, which boots via int 19h."""
        self.bios.post(boot_drive)
        self.cpu.set("cs", rom.ROM_SEGMENT)
        self.cpu.set("eip", rom.RESET_VECTOR)

    # -- hooks -----------------------------------------------------------------------
    # The port hooks never end a slice: Unicorn resumes a slice stopped from an IN/OUT
    # hook at a stale EIP, so the guest executes the I/O instruction (and sometimes the
    # instructions before it in the block) a second time - a port read consumed twice,
    # debug output printed twice (found by tests/test_int13_readparams.py).
    def _on_in(self, uc, port, size, _user):
        return self.ports.read(port, size)

    def _on_out(self, uc, port, size, value, _user):
        self.ports.write(port, size, value)

    def _on_invalid(self, uc, _user):
        return self._serve_invalid()

    def _serve_invalid(self) -> bool:
        cpu = self.cpu
        eip = cpu.get("eip")
        env = self.interrupts.env
        if env.available:
            _, software = env.exception_state()
            if software:  # Unicorn reports `int 6` through this hook too, EIP still on it
                self._record(6, "int")
                self._deliver(ints.UD, ints.SOFTWARE, env.next_eip(), None)
                return self.stop_reason != "failed"
        self._record(6, "#UD")
        self._note_fault(6)
        if not cpu.protected:
            seg, off = cpu.ivt_entry(6)
            if (seg << 4) + off == rom.ROM_BASE + rom.stub(6):
                self._fail(GuestCrash("invalid opcode with no handler"))
                return False
        self._deliver(ints.UD, ints.EXCEPTION, eip, None)
        return self.stop_reason != "failed"

    def _on_interrupt(self, uc, intno, _user):
        self._serve_interrupt(intno)

    def _serve_interrupt(self, intno: int) -> None:
        cpu = self.cpu
        eip, cs, cr0, eax, flags, sp, ss = cpu.interrupt_regs.read()
        if time.perf_counter() >= self._slice_deadline and self.stop_reason is None:
            length = self._software_int_length(cs, eip, intno, cr0, flags)
            if length:
                # End the slice *before* this int (it runs again on resume): a due IRQ is taken
                # here, not inside a handler. With IF=0 too: polling a BIOS with interrupts off
                # (SYSLINUX's prompt) would otherwise run until the watchdog's block stop.
                cpu.set("eip", eip - length)
                self.stop("deadline")
                return
            if cr0 & 1 and intno in ints.FAULTS and self._restartable_fault(intno):
                # A fault leaves EIP on its instruction: undelivered, it faults again on resume.
                # V86 code under a monitor makes no software ints (each one is a #GP).
                self.stop("deadline")
                return
        if not cr0 & 1:
            if self.short_ivt is not None and intno * 4 + 3 > self.short_ivt:
                at = (cs << 4) + eip - self._software_int_length(cs, eip, intno, cr0, flags)
                self.triple_fault(f"vector {intno:#04x} is beyond the real-mode IDT limit {self.short_ivt:#x}", at)
                return
            trap = self.traps.get((cs << 4) + eip - 2)
            if trap is not None and trap[0] == intno:
                self.history.append((intno, "bios", cs, eip - 2, eax))
                if trap[1] is not None:
                    self._serve_bios(trap[1], (ss << 4) + ((sp + 4) & 0xFFFF))
                return
        if not (flags & FLAG_VM and intno == ints.GP):  # V86 calls count at their ROM stub (_v86_bios)
            self._note_activity(intno)
        if cr0 & 1:
            self._interrupt_protected(intno, cs, eip, eax, flags, sp, ss)
            return
        # Unicorn reports only instructions and CPU exceptions (IRQs are ours): outside the few
        # vectors QEMU raises in real mode it can only be `int n`, and asking Unicorn would cost
        # every DOS call.
        if intno not in REAL_MODE_EXCEPTIONS or self._classify(intno)[0]:
            entry = cpu.read32(intno * 4)
            seg, off = entry >> 16, entry & 0xFFFF
            if entry == _ROM_STUB_ENTRY[intno]:
                # IVT still points at our stub: serve now and land on the stub's iret,
                # saving the second trap. The frame and its FLAGS are as in the stub.
                self.history.append((intno, "bios", cs, eip, eax))
                service = self.traps[rom.ROM_BASE + off][1]
                if service is None:
                    return  # `int n` into a bare iret changes nothing: DOS's int 2Ah calls cost no frame
                cpu.enter_real(eip, cs, flags, sp, ss, seg, off + 2)
                self._serve_bios(service, (ss << 4) + ((sp - 2) & 0xFFFF))  # the frame just pushed
            else:
                self.history.append((intno, "int", cs, eip, eax))
                cpu.enter_real(eip, cs, flags, sp, ss, seg, off)
            return
        # A CPU exception: EIP is on the faulting instruction (a fault restarts it) or after
        # it (a trap), as QEMU left it.
        self.history.append((intno, "exception", cs, eip, eax))
        self._note_fault(intno)
        if intno in CPU_EXCEPTIONS:
            seg, off = cpu.ivt_entry(intno)
            if (seg << 4) + off == rom.ROM_BASE + rom.stub(intno):
                self._fail(GuestCrash(f"unhandled CPU exception {intno:#04x} ({ints.NAMES.get(intno, '?')})"))
                return
        self._deliver(intno, ints.EXCEPTION, eip, None)

    def _restartable_fault(self, intno: int) -> bool:
        env = self.interrupts.env
        if not env.available:
            return False
        _, software = env.exception_state()
        if software:
            return False
        env.clear_old_exception()
        return True

    def _classify(self, intno: int) -> tuple[bool, int | None]:
        """(software int, error code) of what the hook reports, from QEMU's own record of it;
        a CPU exception also clears QEMU's pending-exception state (see machine/interrupts.py)."""
        env = self.interrupts.env
        if not env.available:
            return self._software_int_length(self.cpu.get("cs"), self.cpu.get("eip"), intno,
                                             self.cpu.get("cr0"), self.cpu.get("eflags")) > 0, 0
        error_code, software = env.exception_state()
        if not software:
            env.clear_old_exception()
        return software, error_code

    def _deliver(self, vector: int, source: str, return_eip: int, error_code: int | None,
                 running: bool = True, insn_length: int = 2) -> None:
        try:
            self.interrupts.deliver(vector, source, return_eip, error_code, running, insn_length)
        except ints.TripleFault as e:
            at = None
            if source == ints.SOFTWARE:  # point the report at the int, not past it
                at = self.cpu.seg_base(self.cpu.get("cs")) + return_eip - insn_length
            self.triple_fault(str(e), at)
            if not running:
                self._serve_reset()

    def _serve_bios(self, service, flags_at: int) -> None:
        """Run a BIOS service; the caller's FLAGS are at `flags_at` (known from the SS:SP already read)."""
        cpu = self.cpu
        cpu.service_flags_at = flags_at
        try:
            service()
        finally:
            cpu.service_flags_at = None

    def _interrupt_protected(self, intno: int, cs: int, eip: int, eax: int, flags: int, sp: int, ss: int) -> None:
        software, error_code = (True, 0) if intno >= 0x20 else self._classify(intno)
        if flags & FLAG_VM and self._v86_bios(intno, software, cs, eip, eax, sp, ss):
            return
        self.history.append((intno, "int" if software else "exception", cs, eip, eax))
        if not software:
            self._note_fault(intno)
        if software:
            length = self._software_int_length(cs, eip, intno, 1, flags) or 2
            self._deliver(intno, ints.SOFTWARE, eip, None, insn_length=length)
        else:
            self._deliver(intno, ints.EXCEPTION, eip, error_code if intno in ints.WITH_ERROR_CODE else None)

    def _note_activity(self, vector: int) -> None:
        if vector == 0x28:  # DOS idle call: DOS is waiting for console input
            self.bios.keyboard.guest_waiting()
        elif vector not in IDLE_LOOP_VECTORS:
            self.bios.keyboard.polls = 0  # working, not idling (DOS polls for ^C on every call)

    def _v86_bios(self, intno: int, software: bool, cs: int, eip: int, eax: int, sp: int, ss: int) -> bool:
        """A ROM stub reached in virtual-8086 mode (a monitor reflected an `int n` to the IVT)
        runs the BIOS service here. With IOPL < 3 the stub's `int` faults (#GP at the stub):
        serve it and do the stub's `iret` too, which would fault the same way."""
        base = (cs & 0xFFFF) << 4
        if software:
            trap = self.traps.get(base + eip - 2)
            if trap is None or trap[0] != intno:
                return False
            self.history.append((intno, "bios v86", cs, eip - 2, eax))
            if trap[1] is not None:
                self._serve_bios(trap[1], (ss << 4) + ((sp + 4) & 0xFFFF))
            return True
        if intno != ints.GP:
            return False
        trap = self.traps.get(base + eip)
        if trap is None:
            return False
        cpu = self.cpu
        self.history.append((trap[0], "bios v86", cs, eip, eax))
        self._note_activity(trap[0])
        after = eip + 2
        cpu.set("eip", after)  # as if the int had run: a waiting service rewinds to it
        if trap[1] is not None:
            self._serve_bios(trap[1], (ss << 4) + ((sp + 4) & 0xFFFF))
        if cpu.get("eip") != after or cpu.get("cs") != cs or self.stop_reason == "failed":
            return True  # the service moved CS:IP (waits, int 19h): nothing to return to
        if cpu.read8(base + after) != 0xCF:
            return True  # a trap inside a ROM routine (IRQ0's tick): go on with it
        frame_at = (ss << 4) + (sp & 0xFFFF)
        ip, ret_cs, ret_flags = struct.unpack("<HHH", cpu.read(frame_at, 6))
        kept = ints.FLAG_IOPL | FLAG_VM | 0xFFFF0000
        cpu.set("sp", (sp + 6) & 0xFFFF)
        cpu.set("cs", ret_cs)
        cpu.set("eip", ip)
        # iret as at IOPL 3: FLAGS from the frame (the service's CF/ZF with it), IOPL and VM kept.
        flags = (cpu.get("eflags") & kept) | (ret_flags & ~kept)
        if self.interrupts.env.available:
            self.interrupts.env.write_eflags(flags)
        else:
            cpu.set("eflags", flags)
        return True

    def _software_int_length(self, cs: int, eip: int, intno: int, cr0: int, flags: int) -> int:
        """2 for `int n`, 1 for int3/into, 0 when a CPU exception brought us here (by the bytes
        before EIP: the deadline stop needs the length, not the exact kind)."""
        try:
            if not cr0 & 1 or flags & FLAG_VM:
                base = (cs & 0xFFFF) << 4
            else:
                base = self.cpu.seg_base(cs)
            before = self.cpu.read_linear(base + eip - 2, 2)
            if before == bytes((0xCD, intno)):
                return 2
            return 1 if intno in (3, 4) and before[1] in (0xCC, 0xCE) else 0
        except (UcError, ints.Fault):
            return 0

    def _record(self, vector: int, kind: str, cs: int | None = None, ip: int | None = None) -> None:
        cpu = self.cpu
        self.history.append((vector, kind, cpu.get("cs") if cs is None else cs,
                             cpu.get("eip") if ip is None else ip, cpu.get("eax")))

    def fail(self, error: BaseException) -> None:
        """End the run with `error` (it carries the exit code) once the CPU stops; for BIOS services
        that find the guest cannot go on (int 18h, no boot signature)."""
        self._fail(error)

    def _fail(self, error: BaseException) -> None:
        """End the run with `error` (it carries the exit code) once the CPU stops."""
        if self.failure is None:
            self.failure = error
        self.stop("failed")

    def stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.cpu.uc.emu_stop()

    def irq_window(self) -> None:
        """A BIOS service that polls or waits lets pending IRQs in, as SeaBIOS's keyboard and disk
        services do with a brief sti, whatever the caller's IF: when an IRQ is pending or due, end the
        slice so it is delivered before the service returns (SYSLINUX polls int 16h 11h with IF=0 and
        counts its TIMEOUT in timer ticks)."""
        if self.pic.pending() is not None or self.clock.live() >= self.next_event():
            self.bios_window = True
            self.stop("irq-window")

    def wait_in_bios(self, rewind: int = 0) -> None:
        """Called by a BIOS service that must wait (for a key, for time): stop the slice,
        and let IRQs in as a BIOS would with sti. `rewind` re-executes the stub's int."""
        if rewind:
            self.cpu.set("eip", self.cpu.get("eip") - rewind)
        self.waiting_in_bios = True
        self.stop("idle")

    # -- time and IRQs ---------------------------------------------------------------
    def _reschedule_timer(self) -> None:
        self.next_irq0 = self.pit.next_irq0(self.clock.now)
        self._end_slice_at_tick()

    def _end_slice_at_tick(self) -> None:
        """A running slice ends by the next IRQ0, where it is delivered on time (Linux at HZ=250 ticks every
        4 ms; a 20 ms slice would hold four ticks back and hand them over later, back to back)."""
        if not self.pic.master.imr & 1:
            self._end_slice_by(self.next_irq0, MIN_SLICE_SECONDS)

    def _raise_due_irqs(self) -> None:
        now = self.clock.now
        if now >= self.next_irq0:
            # A tick is owed until delivered, one per slice start (as the RTC's periodic interrupt is), so a
            # host too slow to keep up slows the guest's clock as a whole rather than dropping ticks against
            # the RTC; more than 1 s behind (IF=0 that long), they are dropped. The owed ticks do not hold off
            # other IRQs: one raised during the last slice is taken before them (run_slice).
            self.pic.raise_irq(0)
            self.next_irq0 = self.pit.next_irq0(self.next_irq0)
            if now > self.next_irq0 + 1.0:
                self.next_irq0 = self.pit.next_irq0(now)
        if now >= self.cmos.next_irq8:
            self.cmos.update(now)
        self.kbc.service()
        self.bios.keyboard.feed()
        for uart in self.serial:
            uart.poll()

    def next_event(self) -> float:
        return min(self.next_irq0, self.cmos.next_irq8, self.bios.keyboard.next_key_time(), self.wake_time,
                   self.serial[0].timeout_at, self.serial[1].timeout_at)

    def wake_at(self, when: float) -> None:
        """A BIOS service waiting with wait_in_bios() wants to run again at virtual time `when`."""
        self.wake_time = min(self.wake_time, when)

    def _deliver_irq(self) -> bool:
        irq = self.pic.pending()
        if irq is None:
            return False
        cpu = self.cpu
        if not (self.waiting_in_bios or self.bios_window):
            if not cpu.get("eflags") & FLAG_IF:
                self.masked_slice = SHADOW_SLICE_SECONDS if self.masked_slice is None \
                    else min(2 * self.masked_slice, SLICE_SECONDS)
                return False
            env = self.interrupts.env
            if env.available and env.interrupt_shadow():
                self.shadowed = True  # the next slice is a short one: the IRQ comes after one instruction
                return False
        vector = self.pic.acknowledge(irq)
        self.irq_count[irq] += 1
        self._record(vector, f"irq{irq}")
        try:
            if self.short_ivt is not None and vector * 4 + 3 > self.short_ivt and not cpu.protected:
                raise ints.TripleFault(f"vector {vector:#04x} is beyond the real-mode IDT limit {self.short_ivt:#x}")
            self.interrupts.deliver(vector, ints.EXTERNAL, cpu.get("eip"), None, running=False)
        except ints.TripleFault as e:
            self.triple_fault(f"delivering IRQ{irq}: {e}")
            self._serve_reset()
            return True
        self.waiting_in_bios = False
        self.halted = False
        return True

    # -- running -------------------------------------------------------------------
    def run_slice(self) -> None:
        """Run one slice of guest code and everything due around it.

        Raises GuestCrash, BootFailed or a device error when the guest cannot go on.
        """
        cpu = self.cpu
        if self.powered_off is not None:
            raise self.powered_off  # off stays off
        if self.pic.pending() not in (None, 0):
            # A device's IRQ raised inside the last slice came before the ticks now due (the slice ran past
            # them while its stop was on its way): as on a PC it is taken first, and IRQ0 after its handler.
            delivered = self._deliver_irq()
            self._raise_due_irqs()
        else:
            self._raise_due_irqs()
            delivered = self._deliver_irq()
        self.bios_window = False
        if (self.waiting_in_bios or self.halted) and not delivered:
            wake = self.next_event()
            if wake == float("inf"):  # nothing scheduled (IRQ0 masked, a one-shot spent): wait for input
                time.sleep(HALT_POLL_SECONDS)
                wake = self.clock.now + HALT_POLL_SECONDS
            self.clock.skip_to(wake)
            self._raise_due_irqs()
            if self.clock.now >= self.wake_time:
                self.waiting_in_bios = False  # a timed BIOS wait is over: the service runs again and returns
            if not self._deliver_irq() and (self.waiting_in_bios or self.halted):
                return  # nothing can wake the guest yet (a key pause, a halted CPU); the caller loops
        self.wake_time = float("inf")
        self.stop_reason = None
        self.slices += 1
        start = time.perf_counter()
        # The deadline also ends the slice synchronously at the next software int (in the
        # interrupt hook), before it: a due IRQ is then taken ahead of the BIOS call.
        if self.shadowed:
            length = SHADOW_SLICE_SECONDS
        elif self.masked_slice is not None and not delivered and self.pic.pending() is not None:
            length = self.masked_slice
        else:
            length, self.masked_slice = SLICE_SECONDS, None
        self._slice_deadline = start + length
        self.shadowed = False
        self._running_slice = self.slices
        self._start_watchdog()
        self.clock.running(start)
        self._end_slice_by(self.cmos.next_irq8)
        self._end_slice_at_tick()
        try:
            cpu.uc.emu_start(cpu.get("eip"), 0xFFFFFFFF)
        except UcError as e:
            if self.failure is None:
                if e.errno in (UC_ERR_FETCH_PROT, UC_ERR_FETCH_UNMAPPED):  # open bus holds no code
                    self.failure = GuestCrash(f"CPU stopped: instruction fetch from unmapped memory "
                                              f"(no RAM or ROM there) in {cpu.mode()}")
                else:
                    self.failure = GuestCrash(f"CPU stopped: {e}")
        finally:
            end = time.perf_counter()
            with self._arm_lock:  # the watchdog cannot arm (or stamp) between these lines
                self._running_slice = 0
                self._slice_deadline = float("inf")
                # Armed after the CPU stopped (a hlt, a hook's stop): it did not end this slice.
                fired = self._slice_stop.armed and self._armed_at <= end
                self._slice_stop.disarm()
        self.clock.ran(end - start)
        if self.reset_request is not None and self.failure is None:
            self._serve_reset()
            return
        if self.failure is not None:
            failure, self.failure = self.failure, None
            if isinstance(failure, GuestPoweredOff):
                self.powered_off = failure
            if isinstance(failure, GuestCrash) and not failure.report:
                failure.report = self.crash_report()
            raise failure
        if self.stop_reason is None and fired:
            self.stop_reason = "watchdog"
        idle = self.stop_reason == "idle"
        if self.stop_reason is None:
            # Not stopped by us nor by the watchdog: emu_start returned by itself, on hlt (the guest's,
            # or the one QEMU puts in place of a triple fault).
            idle = self._check_halt()
            if self.reset_request is not None:
                self._serve_reset()
                return
        if self.stop_reason in (None, "watchdog") and not idle:
            self._check_runaway()
        self._check_ivt_limit()
        if self.stop_reason == "irq-window":
            pass  # a BIOS poll let an IRQ in: says nothing about whether the guest idles
        elif not idle:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = self.clock.now

    def _end_slice_by(self, when: float, at_least: float = 0.0) -> None:
        """End the running slice by virtual time `when`, when the next IRQ8 is due: the RTC's periodic
        interrupt runs at up to 8 kHz, and a guest that computes between its IRQ8s (no hlt, no BIOS call)
        would otherwise see one per slice. The RTC asks only while IRQ8 is not pending (it waits for
        register C to be read), so this never spins on an interrupt the guest cannot take. `at_least`: the
        slice runs that long whatever `when` says."""
        at = max(self.clock.host_time_of(when), self.clock.host_time_of(self.clock.now) + at_least)
        if self._running_slice and at < self._slice_deadline:
            self._slice_deadline = at
            self._deadline_moved.set()

    def _end_slice_soon(self) -> None:
        """An IRQ became deliverable inside the slice (a handler's EOI let the next one through, an unmask):
        end the slice at the next block, where IRQs are delivered, instead of at the slice's deadline."""
        self._end_slice_by(self.clock.now)

    def _start_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=_watch, args=(weakref.ref(self),),
                                              name="nbdboot-cpu-watchdog", daemon=True)
            self._watchdog.start()

    def _watchdog_check(self) -> float:
        """Arm the block stop if the running slice is past its deadline; return how
        long to sleep before looking again."""
        running, deadline = self._running_slice, self._slice_deadline
        now = time.perf_counter()
        if not running:
            return SLICE_SECONDS / 4
        if now < deadline:
            return max(deadline - now, 0.0005)
        # Under the lock, and once per slice: a second stamp taken while the CPU had already
        # stopped on the first arm (its thread not yet back from emu_start) made that stop look
        # as if the slice had ended by itself, which _check_halt takes for a triple fault.
        with self._arm_lock:
            if self._running_slice == running and self.stop_reason is None and not self._slice_stop.armed:
                self._armed_at = now
                self._slice_stop.arm()
        return SLICE_SECONDS / 4

    def _check_halt(self) -> bool:
        """hlt ends emu_start with EIP after it. With IF=1 the guest idles until the next interrupt;
        with IF=0 (and no NMI, which this PC never raises) it stays halted for ever: the run ends.
        A slice that ended by itself without a hlt is QEMU's shutdown (a triple fault it caught)."""
        cpu = self.cpu
        try:
            pc = cpu.pc()
            if cpu.read_linear(pc - 1, 1) != b"\xf4":  # a paging guest's hlt is at a linear address
                self.triple_fault(f"the CPU shut down at {cpu.get('cs'):04x}:{cpu.get('eip'):04x}")
                return False
        except (UcError, ints.Fault):
            return False
        if cpu.get("eflags") & FLAG_IF:
            # Halted until an interrupt: the next slice starts only once one is delivered.
            self.halted = True
            return True
        raise GuestCrash("halted with interrupts off and nothing to wake it", self.crash_report(pc - 1))

    def _check_ivt_limit(self) -> None:
        """A real-mode guest that loaded an IDT limit below 3FFh (`lidt` of a zero limit, the classic
        way to force a reset): an interrupt beyond it faults, and with nothing to deliver the fault
        through, the CPU shuts down. Read between slices (IDTR reads cost microseconds; no hook sees
        `lidt`), so an `int` in the same slice as the `lidt` still goes through the IVT."""
        _, _, limit, _ = self.cpu.uc.reg_read(X.UC_X86_REG_IDTR)
        self.short_ivt = limit if limit < 0x3FF and not self.cpu.protected else None

    def _note_fault(self, vector: int) -> None:
        """What a fault left to tell a handler that makes progress (a #PF handler mapping page after page
        for one `rep movsd`: same vector, same CS:EIP, another CR2 and ECX each time) from one that returns
        to the same fault for ever."""
        cpu = self.cpu
        self.fault_states.append((vector, cpu.get("cr2") if vector == 14 else 0, cpu.get("ecx"),
                                  cpu.get("esi"), cpu.get("edi")))

    def _check_runaway(self) -> None:
        """A slice that ran without ending by itself: is the guest executing zeroed memory (a jump
        into nowhere), or taking the same exception at the same place again and again (a handler
        that returns to the faulting instruction)? Either runs for ever; end it with a report."""
        cpu = self.cpu
        try:
            code = cpu.read_linear(cpu.pc(), RUNAWAY_ZEROS)
        except (UcError, ints.Fault):
            return
        if code == bytes(RUNAWAY_ZEROS):  # at CS's hidden base (cpu.pc()), also right after a mode switch
            raise GuestCrash("executing zeroed memory (a jump or return into nowhere)", self.crash_report())
        history = self.history
        faults = self.fault_states
        if len(history) == history.maxlen and history[0][1] in ("exception", "#UD") \
                and history.count(history[0]) == len(history) \
                and len(faults) == faults.maxlen and faults.count(faults[-1]) == len(faults):
            vector, _, cs, ip, _ = history[0]
            raise GuestCrash(f"the same CPU exception {vector:#04x} at {cs:04x}:{ip:04x} again and again "
                             f"(its handler returns to the faulting instruction)", self.crash_report())

    def crash_report(self, at: int | None = None) -> str:
        from nbdboot.machine.crash import crash_report
        return crash_report(self, at)
