"""--break ADDR: end the run when the CPU reaches an address, with a report (exit 7)."""

from __future__ import annotations

from nbdboot.debug.inspect import linear_pc, stop_report
from nbdboot.errors import BreakpointReached


class BreakOnAddresses:
    def __init__(self, debugger, addresses: list[int], disklog=None):
        self.debugger = debugger
        self.addresses = set(addresses)
        self.disklog = disklog
        for address in self.addresses:
            debugger.add_breakpoint(address)
        debugger.handlers.insert(0, self.on_stop)

    def on_stop(self, event) -> bool:
        if event.kind != "break" or event.address not in self.addresses:
            return False
        machine = self.debugger.machine
        cpu = machine.cpu
        where = f"{cpu.get('cs'):04x}:{(cpu.get('eip') & 0xFFFF):04x}" if not cpu.get("cr0") & 1 else \
            f"{cpu.get('cs'):04x}:{cpu.get('eip'):08x}"
        raise BreakpointReached(f"breakpoint at {where} (linear {linear_pc(cpu):#x})",
                                stop_report(machine, self.disklog))

    def close(self) -> None:
        for address in self.addresses:
            self.debugger.remove_breakpoint(address)
