"""The time-stamp counter on the virtual clock.

`rdtsc` left to Unicorn reads the host's counter, which keeps running while the
virtual clock skips an idle guest ahead: a guest that calibrates the TSC against
the PIT and then sleeps on timer ticks would see the two disagree. Here the
counter is the virtual clock at a fixed rate, so PIT, RTC and TSC tell one time.

Unicorn 2.1 calls a UC_HOOK_INSN hook for RDTSC/RDTSCP; its Python binding does not
offer one, so the hook goes in through the C API. A guest executes `rdtsc` rarely
(calibration, delays, timestamps), so one Python call each costs nothing visible.
"""

from __future__ import annotations

import ctypes

from unicorn import UC_HOOK_INSN
from unicorn import x86_const as X

# The rate guests measure when they calibrate the TSC against the PIT.
TSC_HZ = 1_000_000_000


class TimeStampCounter:
    def __init__(self, clock):
        self.clock = clock
        self._base = 0
        self._last = -1
        self._hooks = []  # the C side keeps only pointers

    def read(self) -> int:
        """Strictly increasing, as on hardware: two reads never give the same value, since
        guests divide by the difference (a calibration with a zero delta divides by zero)."""
        value = int(self.clock.live() * TSC_HZ) - self._base
        if value <= self._last:
            value = self._last + 1
        self._last = value
        return value

    def reset(self) -> None:
        """A CPU reset sets the counter to zero."""
        self._base += self.read() + 1
        self._last = -1

    def install(self, uc) -> bool:
        """Hook RDTSC and RDTSCP; False where the engine cannot (the host's counter stays)."""
        try:
            from unicorn.unicorn_py3 import unicorn as binding
        except ImportError:
            return False
        insn_cb = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p)
        for insn, aux in ((X.UC_X86_INS_RDTSC, False), (X.UC_X86_INS_RDTSCP, True)):
            callback = insn_cb(self._on_rdtscp if aux else self._on_rdtsc)
            handle = binding.uc_hook_h()
            status = binding.uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_INSN,
                                               ctypes.cast(callback, ctypes.c_void_p), None,
                                               ctypes.c_uint64(1), ctypes.c_uint64(0), ctypes.c_int(insn))
            if status != 0:
                return False
            self._hooks.append((callback, handle))
        self._uc = uc
        return True

    def _set_edx_eax(self) -> None:
        value = self.read()
        self._uc.reg_write(X.UC_X86_REG_EAX, value & 0xFFFFFFFF)
        self._uc.reg_write(X.UC_X86_REG_EDX, (value >> 32) & 0xFFFFFFFF)

    def _on_rdtsc(self, _uch, _user) -> int:
        self._set_edx_eax()
        return 1  # the instruction is done: skip the engine's own

    def _on_rdtscp(self, _uch, _user) -> int:
        self._set_edx_eax()
        self._uc.reg_write(X.UC_X86_REG_ECX, 0)  # IA32_TSC_AUX: one processor, number 0
        return 1
