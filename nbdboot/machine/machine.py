"""The PC: CPU, memory map, ROM, devices, BIOS and the run loop.

Memory: one RAM region from 0 to 1 MiB + extended memory (A20 is always on in
Unicorn, so FFFF:0010 must reach real RAM). Conventional memory ends at 9FC00h
where the 1 KiB EBDA starts, text video memory is the RAM at B8000h, the ROM
image is copied to F0000h.

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

from nbdboot.errors import EXIT_GUEST_CRASH, NbdbootError
from nbdboot.machine import rom
from nbdboot.machine.clock import VirtualClock
from nbdboot.machine import interrupts as ints
from nbdboot.machine.cpu import FLAG_IF, Cpu
from nbdboot.machine.devices import (Cmos, DebugConsole, Keyboard8042, Pic, Pit, SystemControlA,
                                     SystemControlB, VgaPorts)
from nbdboot.machine.ports import PortBus
from nbdboot.machine.slicing import SliceStop

from nbdboot.machine.memmap import CONVENTIONAL_TOP, EBDA_SEGMENT, EXTENDED_BASE, VIDEO_TEXT  # noqa: F401,E402
DEFAULT_MEMORY_MB = 64
SLICE_SECONDS = 0.02  # wall time per slice; then the slice ends at the next safe point
CPU_EXCEPTIONS = range(0, 0x08)
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
        del machine
        time.sleep(wait)


class Machine:
    def __init__(self, memory_mb: int = DEFAULT_MEMORY_MB, debug_out=None):
        if not 1 <= memory_mb <= 3072:
            raise ValueError("memory must be between 1 and 3072 MiB")
        self.memory_mb = memory_mb
        self.extended_bytes = memory_mb * 1024 * 1024
        self.cpu = Cpu(EXTENDED_BASE + self.extended_bytes)
        self.clock = VirtualClock()
        self.pic = Pic()
        self.pit = Pit(self.clock)
        self.cmos = Cmos(self.clock, ext_kb=self.extended_bytes // 1024)
        self.kbc = Keyboard8042()
        self.vga = VgaPorts()
        self.debugcon = DebugConsole(debug_out)
        self.ports = PortBus()
        for device in (self.pic, self.pit, self.cmos, self.kbc, self.vga, self.debugcon,
                       SystemControlA(), SystemControlB(self.clock, self.pit)):
            device.attach(self.ports)
        self.pit.on_channel0_change = self._reschedule_timer
        self.next_irq0 = self.pit.period()
        self.traps: dict[int, tuple] = {}  # linear address -> (vector, service)
        self.history = collections.deque(maxlen=32)  # (vector, cs, ip, ax, kind)
        self.stop_reason: str | None = None
        self.waiting_in_bios = False   # a BIOS call is waiting with interrupts on
        self.halt_site = None
        self.idle_since: float | None = None  # virtual time the guest started idling
        self.failure: BaseException | None = None
        self.slices = 0
        self.irq_count = collections.Counter()
        self._slice_deadline = float("inf")
        self._running_slice = 0     # slice number while emu_start runs, 0 otherwise
        self._watchdog: threading.Thread | None = None
        self._armed_at = 0.0        # when the watchdog last armed the block stop
        self.cpu.write(rom.ROM_BASE, rom.load_image())
        self.interrupts = ints.Interrupts(self.cpu)

        from nbdboot.bios import Bios  # the BIOS needs a built machine
        self.bios = Bios(self)

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
            error = GuestCrash(f"triple fault in {self.cpu.mode()}: {e}")
            if running:
                self._fail(error)
            else:
                raise error from None

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

    def wait_in_bios(self, rewind: int = 0) -> None:
        """Called by a BIOS service that must wait (for a key, for time): stop the slice,
        and let IRQs in as a BIOS would with sti. `rewind` re-executes the stub's int."""
        if rewind:
            self.cpu.set("eip", self.cpu.get("eip") - rewind)
        self.waiting_in_bios = True
        self.stop("idle")

    # -- time and IRQs ---------------------------------------------------------------
    def _reschedule_timer(self) -> None:
        self.next_irq0 = self.clock.now + self.pit.period()

    def _raise_due_irqs(self) -> None:
        period = self.pit.period()
        if self.clock.now >= self.next_irq0:
            self.pic.raise_irq(0)
            self.next_irq0 += period
            if self.clock.now > self.next_irq0 + 1.0:  # far behind (guest had IF=0): drop ticks
                self.next_irq0 = self.clock.now + period
        self.bios.keyboard.feed()

    def next_event(self) -> float:
        return min(self.next_irq0, self.bios.keyboard.next_key_time())

    def _deliver_irq(self) -> bool:
        irq = self.pic.pending()
        if irq is None:
            return False
        cpu = self.cpu
        if not (cpu.get("eflags") & FLAG_IF) and not self.waiting_in_bios:
            return False
        vector = self.pic.acknowledge(irq)
        self.irq_count[irq] += 1
        self._record(vector, f"irq{irq}")
        try:
            self.interrupts.deliver(vector, ints.EXTERNAL, cpu.get("eip"), None, running=False)
        except ints.TripleFault as e:
            raise GuestCrash(f"triple fault delivering IRQ{irq} in {cpu.mode()}: {e}", self.crash_report()) from None
        self.waiting_in_bios = False
        self.halt_site = None
        return True

    # -- running -------------------------------------------------------------------
    def run_slice(self) -> None:
        """Run one slice of guest code and everything due around it.

        Raises GuestCrash, BootFailed or a device error when the guest cannot go on.
        """
        cpu = self.cpu
        self._raise_due_irqs()
        delivered = self._deliver_irq()
        if self.waiting_in_bios and not delivered:
            self.clock.skip_to(self.next_event())
            self._raise_due_irqs()
            if not self._deliver_irq() and self.waiting_in_bios:
                return  # nothing can wake the guest yet (a key pause); the caller loops
        self.stop_reason = None
        self.slices += 1
        start = time.perf_counter()
        # The deadline also ends the slice synchronously at the next software int (in the
        # interrupt hook), before it: a due IRQ is then taken ahead of the BIOS call.
        self._slice_deadline = start + SLICE_SECONDS
        self._running_slice = self.slices
        self._start_watchdog()
        self.clock.running()
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
            self._running_slice = 0
            self._slice_deadline = float("inf")
            # Armed after the CPU stopped (a hlt, a hook's stop): it did not end this slice.
            fired = self._slice_stop.armed and self._armed_at <= end
            self._slice_stop.disarm()
        self.clock.ran(end - start)
        if self.failure is not None:
            failure, self.failure = self.failure, None
            if isinstance(failure, GuestCrash) and not failure.report:
                failure.report = self.crash_report()
            raise failure
        if self.stop_reason is None and fired:
            self.stop_reason = "watchdog"
        idle = self.stop_reason == "idle"
        if self.stop_reason is None:
            idle = self._check_halt()
        if not idle:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = self.clock.now

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
        if self._running_slice == running and self.stop_reason is None:
            self._armed_at = now
            self._slice_stop.arm()
        return SLICE_SECONDS / 4

    def _check_halt(self) -> bool:
        """hlt ends emu_start with EIP after it; a hook's stop at a block that follows
        an F4h byte looks the same, so a dead halt (IF=0) needs the same site twice in a row."""
        cpu = self.cpu
        try:
            pc = cpu.pc()
            if cpu.read_linear(pc - 1, 1) != b"\xf4":  # a paging guest's hlt is at a linear address
                self.halt_site = None
                return False
        except (UcError, ints.Fault):
            return False
        if cpu.get("eflags") & FLAG_IF:
            self.halt_site = None
            if self.pic.pending() is None:  # a pending IRQ (IRQ1 behind IRQ0) wakes it now, not at the next tick
                self.clock.skip_to(self.next_event())
            return True
        if self.halt_site == pc:
            raise GuestCrash("halted with interrupts off and nothing to wake it", self.crash_report(pc - 1))
        self.halt_site = pc
        return False

    def crash_report(self, at: int | None = None) -> str:
        from nbdboot.debug.crash import crash_report
        return crash_report(self, at)
