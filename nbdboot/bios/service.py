"""The one return convention of BIOS functions, and the exit a dispatcher gives it.

A BIOS interrupt (int 13h, 15h, 1Ah...) is served by a dispatcher that picks a
function by AH; the function reads its entry registers from the CPU, writes its
result registers and returns what became of the call:

- `None`: success; CF clear, AH as the function left it (int 13h 41h's 30h,
  15h's drive type) and, where the interrupt keeps a status in the BDA, 00h there;
- a status byte: AH = status, CF set unless it is 00h, the BDA status = status
  (SeaBIOS's disk_ret / set_code_*; int 13h's 40:41 for floppies, 40:74 for
  hard disks);
- `CARRY`: CF set, AH as the function left it (int 15h 4Fh: "process this
  scan code"; a wait that re-executes its `int`).

Each function's docstring is its register contract, as in iPXE's int13.c: what
the registers mean on entry and what they hold on return. The dispatcher alone
writes CF (in the caller's FLAGS, which sit in the interrupt frame while the
stub runs: machine/cpu.py) and the BDA status, so a function can be run alone
against a machine's registers and memory and its exit checked (tests/support/bios_bench.py, used by
tests/test_bios_*_services.py).
"""

from __future__ import annotations

from nbdboot.machine.cpu import FLAG_CF

CARRY = -1  # CF set, AH as the function left it

OK = 0x00
UNSUPPORTED = 0x86  # int 15h/1Ah: function not supported (SeaBIOS's RET_EUNSUPPORTED)


def finish(cpu, status, set_bits: int = 0) -> None:
    """The caller's AH and CF for a function's return value (`set_bits`: more FLAGS bits to set)."""
    if status is None or status == 0:
        if status is not None:
            cpu.set("ah", 0)
        cpu.set_frame_flags(set_bits, FLAG_CF)
        return
    if status != CARRY:
        cpu.set("ah", status)
    cpu.set_frame_flags(set_bits | FLAG_CF)


class Dispatcher:
    """An interrupt's dispatcher by AH under this convention: `functions[AH]()`'s return given to the
    caller by `finish`; `missing` is the status for an AH without a function. Named like the method
    it stands for (`System.int15`), as traces and crash reports show a trap's service by name."""

    __slots__ = ("cpu", "functions", "missing", "__qualname__")

    def __init__(self, cpu, functions: dict, missing: int, name: str):
        self.cpu = cpu
        self.functions = functions
        self.missing = missing
        self.__qualname__ = name

    def __call__(self) -> None:
        cpu = self.cpu
        function = self.functions.get(cpu.get("ah"))
        finish(cpu, function() if function is not None else self.missing)
