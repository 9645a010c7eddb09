"""Stopping and stepping the guest: breakpoints, watchpoints, single steps.

Each breakpoint is a Unicorn code hook on its one address and each watchpoint a
memory hook on its range, added when set and removed when cleared, so a run
with none pays nothing. A hook that fires asks the CPU to stop; the run loop's
slice returns and the debugger, which wraps Machine.run_slice, hands the stop to
whoever asked for it (the gdb stub, --break) before the next slice.

A code hook stops before its instruction runs. A memory hook cannot stop there:
Unicorn finishes the instruction but leaves EIP at its start, so resuming would
run it twice (an `inc [x]` counted twice). The hook therefore saves the CPU
context and the bytes about to be written; on the stop they are put back and
the instruction is run once more, alone, with the hooks only recording, which
leaves the CPU just after it, as an x86 data breakpoint does.

Single steps run the CPU with Unicorn's instruction count of one, from a
loop of their own: no IRQ is delivered between steps (as QEMU steps by default).
"""

from __future__ import annotations

import time

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MEM_READ, UC_MEM_WRITE, UcError

from nbdboot.machine import rom

FLAG_VM = 0x20000  # EFLAGS.VM: virtual-8086 mode

WRITE, READ, ACCESS = "watch", "rwatch", "awatch"  # gdb's names, used in stop replies


class StopEvent:
    __slots__ = ("kind", "address", "watch", "failure")

    def __init__(self, kind: str, address: int = 0, watch: str | None = None):
        self.kind = kind          # "break", "watch", "step", "boot", "interrupt", "connect", "crash"
        self.address = address    # linear address of the breakpoint or of the data accessed
        self.watch = watch        # WRITE, READ or ACCESS for a watchpoint
        self.failure = None       # for "crash": the error that ends the run once the debugger lets go

    def __repr__(self) -> str:
        return f"StopEvent({self.kind}, {self.address:#x})"


class Debugger:
    def __init__(self, machine):
        self.machine = machine
        self.uc = machine.cpu.uc
        self.breakpoints: dict[int, int] = {}                  # linear address -> hook handle
        self._users: dict[int, int] = {}                       # linear address -> how many set it
        self.watchpoints: dict[tuple[str, int, int], int] = {}  # (kind, address, length) -> hook handle
        self.event: StopEvent | None = None
        self.stop_at_boot = False   # stop before the boot sector's first instruction
        self.handlers: list = []    # on_stop(event) -> None; first to return True took it
        self.pollers: list = []     # poll() -> StopEvent | None, after each slice (gdb's Ctrl-C, a new client)
        self.paused = 0.0           # seconds the guest spent stopped for a debugger
        self.session = None         # the Session whose --timeout excludes `paused`
        self.deadline: float | None = None  # time.monotonic() at which --timeout ends the run
        self._recording = False     # stepping: memory hooks note accesses, never stop
        self._restore = None        # (context, address, old bytes) from the memory hook that stopped
        self._counted = False       # translated code carries Unicorn's instruction counter
        self._run_slice = machine.run_slice
        machine.run_slice = self.run_slice

    # -- the run loop ---------------------------------------------------------------
    def run_slice(self) -> None:
        try:
            self._run_slice()
        except Exception as failure:
            # A crash while a debugger is attached stops there first (gdb sees SIGSEGV and can look around);
            # the run then ends with it as it would have.
            if getattr(failure, "exit_code", None) is not None:
                self._deliver(StopEvent("crash", self.pc_linear()), failure)
            raise
        if self.machine.stop_reason == "boot" and self.stop_at_boot:
            self.stop_at_boot = False
            self._deliver(StopEvent("boot", self.pc_linear()))
        if self.event is None:
            for poll in self.pollers:
                event = poll()
                if event is not None:
                    self.event = event
                    break
        if self.event is not None:
            event, self.event = self.event, None
            if event.kind == "watch" and self._restore is not None:
                self._finish_watch_stop()
            self._deliver(event)

    def _deliver(self, event: StopEvent, failure: BaseException | None = None) -> None:
        event.failure = failure
        try:
            for handler in list(self.handlers):
                if handler(event):
                    break
        finally:
            self._uncount()

    def add_paused(self, seconds: float) -> None:
        """Time the guest was held stopped by a person: not counted against --timeout."""
        self.paused += seconds
        if self.session is not None:
            self.session.paused = self.paused
        from nbdboot import interrupt
        interrupt.postpone_deadline(seconds)  # the NBD waits' share of --timeout

    # -- state ------------------------------------------------------------------------
    def real_addressing(self) -> bool:
        """Real or virtual-8086 mode: addresses are segment*16 + offset."""
        cpu = self.machine.cpu
        return not cpu.get("cr0") & 1 or bool(cpu.get("eflags") & FLAG_VM)

    def pc_linear(self) -> int:
        cpu = self.machine.cpu
        if self.real_addressing():
            return (cpu.get("cs") << 4) + (cpu.get("eip") & 0xFFFF)
        return cpu.seg_base(cpu.get("cs")) + cpu.get("eip")

    # -- breakpoints -------------------------------------------------------------------
    def add_breakpoint(self, address: int) -> None:
        """One more user of a breakpoint at `address` (gdb and --break may share one)."""
        if address in self.breakpoints:
            self._users[address] += 1
            return
        self.breakpoints[address] = self.uc.hook_add(UC_HOOK_CODE, self._on_code, None, address, address)
        self._users[address] = 1
        self._forget_code(address)

    def remove_breakpoint(self, address: int) -> bool:
        if address not in self.breakpoints:
            return False
        self._users[address] -= 1
        if self._users[address]:
            return True
        del self._users[address]
        self.uc.hook_del(self.breakpoints.pop(address))
        self._forget_code(address)
        return True

    def _forget_code(self, address: int) -> None:
        # Hooks are compiled into translated code: the block holding `address` must be translated again.
        self.uc.ctl_remove_cache(address, address + 1)

    def _on_code(self, uc, address, size, _user) -> None:
        if self._recording or self.event is not None:
            return
        self.event = StopEvent("break", address)
        self.machine.stop("debug")

    # -- watchpoints -------------------------------------------------------------------
    def add_watchpoint(self, kind: str, address: int, length: int) -> None:
        key = (kind, address, length)
        if key in self.watchpoints:
            return
        types = {WRITE: UC_HOOK_MEM_WRITE, READ: UC_HOOK_MEM_READ,
                 ACCESS: UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE}[kind]
        self.watchpoints[key] = self.uc.hook_add(types, self._on_memory, kind, address, address + max(length, 1) - 1)

    def remove_watchpoint(self, kind: str, address: int, length: int) -> bool:
        handle = self.watchpoints.pop((kind, address, length), None)
        if handle is None:
            return False
        self.uc.hook_del(handle)
        return True

    def clear(self) -> None:
        for address in list(self.breakpoints):
            self._users[address] = 1
            self.remove_breakpoint(address)
        for key in list(self.watchpoints):
            self.remove_watchpoint(*key)

    def _on_memory(self, uc, access, address, size, value, kind) -> None:
        if kind == WRITE and access != UC_MEM_WRITE or kind == READ and access != UC_MEM_READ:
            return
        if self._recording:
            if self.event is None:
                self.event = StopEvent("watch", address, kind)
            return
        if self.event is not None:
            return
        self.event = StopEvent("watch", address, kind)
        old = bytes(uc.mem_read(address, size)) if access == UC_MEM_WRITE else b""
        self._restore = (uc.context_save(), address, old)
        self.machine.stop("debug")

    def _finish_watch_stop(self) -> None:
        """Undo the instruction that hit a watchpoint, then run it alone: the stop lands after it."""
        context, address, old = self._restore
        self._restore = None
        self.uc.context_restore(context)
        if old:
            self.uc.mem_write(address, old)
        self.step(record=False)

    # -- stepping ----------------------------------------------------------------------
    def step(self, record: bool = True) -> StopEvent | None:
        """Run one instruction; returns the watchpoint it hit, if any. An `int n` the BIOS serves is one
        step: the service runs in Python, so the step would otherwise stop on the ROM stub's iret."""
        cpu = self.machine.cpu
        try:
            at = self.pc_linear()
            is_int = cpu.read8(at) == 0xCD
        except UcError:
            is_int = False
        event = self._step_once()
        if is_int and self.machine.failure is None:
            try:
                pc = self.pc_linear()
                in_stub = pc >= rom.ROM_BASE and cpu.read8(pc) == 0xCF
            except UcError:
                in_stub = False
            if in_stub:
                event = self._step_once() or event
        return event if record else None

    def _step_once(self) -> StopEvent | None:
        machine = self.machine
        if not self._counted:
            self.uc.ctl_flush_tb()  # Unicorn's instruction counter exists only in code translated with it
            self._counted = True
        self._recording = True
        self.event = None
        machine.stop_reason = None
        # The guest moves on: a BIOS wait the slice ended in is over (a service still waiting says so again),
        # or the run loop would deliver an IRQ "inside the BIOS" wherever the CPU now is.
        machine.waiting_in_bios = False
        started = time.perf_counter()
        machine.clock.running()
        try:
            cpu = machine.cpu
            self.uc.emu_start(cpu.get("eip"), 0xFFFFFFFF, count=1)
        except UcError as e:
            from nbdboot.machine.machine import GuestCrash
            if machine.failure is None:
                machine.failure = GuestCrash(f"CPU stopped: {e}")
        finally:
            self._recording = False
            machine.clock.ran(time.perf_counter() - started)
        event, self.event = self.event, None
        return event

    def take_failure(self):
        """A crash the last step caused (the machine raises it on its next slice otherwise)."""
        failure, self.machine.failure = self.machine.failure, None
        return failure

    def _uncount(self) -> None:
        if self._counted:
            self.uc.ctl_flush_tb()  # back to code without the counter for the run loop's slices
            self._counted = False
