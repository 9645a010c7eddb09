"""Ending a slice of guest code at a point where Unicorn's state is exact.

A guest can run for seconds without executing anything we hook (a decompressor
with interrupts off), yet timers and deadlines must still be honoured. Stopping
the CPU from another thread (`uc_emu_stop`, or `emu_start(timeout=...)`, which
does the same from Unicorn's timer thread) is not safe: the stop lands at the
head of whatever translation block runs next, and when that block was entered
through a direct chained jump, Unicorn 2.1 reports the EIP of an earlier point
(it skips its PC resync once a stop has been requested), so resuming re-executes
instructions. Unicorn's `count` limit is exact but compiles a C callback into
every instruction (about 4x slower on CPU-bound code).

What this module does instead: two UC_HOOK_BLOCK hooks on every address, whose
callback is a C function of Unicorn itself. Unicorn compiles a call to its hook
dispatcher at the start of every translation block, after syncing EIP; the
dispatcher reads each hook's callback pointer from the hook structure on every
call. Normally that pointer is a C function that does nothing
(`uc_arch_supported`); to end the slice, the watchdog thread stores the address
of `uc_emu_stop` there (one aligned pointer store). The next block to start then
requests the stop from inside a hook, and the exit check that follows at the
block's head leaves the CPU exactly at that block, none of it executed. No
Python runs per block. Two hooks, because with exactly one Unicorn inlines its
callback into translated code and the pointer would no longer be read.

Cost: one C call per translation block (about 10-15% on a tight loop, measured
in docs/perf.md), paid by translated code only, never by Python.
"""

from __future__ import annotations

import ctypes

from unicorn import UC_HOOK_BLOCK

try:
    from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib
except ImportError:  # pragma: no cover - other binding layouts
    uclib = None

# Unicorn 2.1's struct hook (include/uc_priv.h), as 64-bit words: type and insn,
# refs and op, op_flags and to_delete, begin, end, callback, user_data, regions.
_HOOK_WORDS = 8
_BEGIN, _END, _CALLBACK = 3, 4, 5


class SliceStop:
    """Arms a stop at the next translation block of a running Unicorn engine,
    from any thread."""

    def __init__(self, uc):
        if uclib is None:  # pragma: no cover
            raise RuntimeError("this unicorn binding does not expose its C library (need unicorn 2.1)")
        self._idle = ctypes.cast(uclib.uc_arch_supported, ctypes.c_void_p).value
        self._stop = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
        self._handles = []
        for _ in range(2):
            handle = uc_hook_h()
            status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK,
                                       ctypes.c_void_p(self._idle), None,
                                       ctypes.c_uint64(1), ctypes.c_uint64(0))
            if status != 0:
                raise RuntimeError(f"unicorn: cannot add a block hook (error {status})")
            self._handles.append(handle)
        # uc_hook is the address of Unicorn's struct hook: check the layout by the
        # values just passed, then keep a view of its callback field.
        words = (ctypes.c_uint64 * _HOOK_WORDS).from_address(self._handles[0].value)
        if (words[0] & 0xFFFFFFFF != UC_HOOK_BLOCK or words[_BEGIN] != 1 or words[_END] != 0
                or words[_CALLBACK] != self._idle):
            raise RuntimeError("unicorn: unexpected hook layout (this needs unicorn 2.1)")
        self._callback = ctypes.c_uint64.from_address(self._handles[0].value + 8 * _CALLBACK)

    def arm(self) -> None:
        """The next translation block to start stops the CPU before it runs.
        Safe from another thread while emu_start runs."""
        self._callback.value = self._stop

    def disarm(self) -> None:
        """Call while the CPU is stopped, before the next emu_start."""
        self._callback.value = self._idle

    @property
    def armed(self) -> bool:
        return self._callback.value == self._stop
