"""Ending a slice of guest code at a point where Unicorn's state is exact.

A guest can run for seconds without executing anything we hook (a decompressor
with interrupts off), yet timers and deadlines must still be honoured. Stopping
the CPU from another thread (`uc_emu_stop`, or `emu_start(timeout=...)`, which
does the same from Unicorn's timer thread) is not safe: the stop lands wherever
the CPU is, and boots resumed from such stops failed at random (SYSLINUX +
ipxe.lkrn 9 runs in 10). Unicorn's `count` limit is exact but compiles a C
callback into every instruction (about 4x slower on CPU-bound code).

What this module does instead: a UC_HOOK_BLOCK hook on every address whose
callback is native code. Unicorn compiles a call to the hook at the start of
every translation block, after syncing EIP; the block's exit check follows. To
end the slice, the watchdog thread makes the callback call `uc_emu_stop` (one
aligned store); the next block to start requests the stop from inside the hook,
and the exit check leaves the CPU exactly at that block, none of it executed.
No Python runs per block.

The callback, fastest first:
- on x86-64, 11 bytes of machine code in an executable page: load the word at
  user_data; zero: return; else tail-call it (it holds uc_emu_stop's address,
  and the engine is already the first argument). With a single block hook
  Unicorn calls the callback directly from translated code.
- elsewhere (or where no executable page can be had): two hooks with
  Unicorn's own C functions as callbacks, `uc_arch_supported` (does nothing)
  swapped for `uc_emu_stop` in the hook structure. With two hooks Unicorn calls
  them through its dispatcher, which reads the callback pointers on every call
  (with one it would inline the pointer into translated code).

Cost: one native call per translation block, paid by translated code only
(figures in docs/perf.md).
"""

from __future__ import annotations

import ctypes
import mmap
import platform

from unicorn import UC_HOOK_BLOCK

try:
    from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib
except ImportError:  # pragma: no cover - other binding layouts
    uclib = None

# Unicorn 2.1's struct hook (include/uc_priv.h), as 64-bit words: type and insn,
# refs and op, op_flags and to_delete, begin, end, callback, user_data, regions.
_HOOK_WORDS = 8
_BEGIN, _END, _CALLBACK = 3, 4, 5

# x86-64 System V: callback(uc=rdi, address=rsi, size=edx, user_data=rcx).
_STOP_IF_ARMED = bytes((
    0x48, 0x8B, 0x01,   # mov rax, [rcx]     the word at user_data
    0x48, 0x85, 0xC0,   # test rax, rax
    0x75, 0x01,         # jnz +1
    0xC3,               # ret                not armed
    0xFF, 0xE0,         # jmp rax            armed: uc_emu_stop(uc)
))


def _native_callback():
    """An executable copy of _STOP_IF_ARMED, or None where that cannot be had."""
    if platform.machine().lower() not in ("x86_64", "amd64") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, AttributeError, ValueError):  # W^X policies, other platforms
        return None
    page.write(_STOP_IF_ARMED)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return page, address


class SliceStop:
    """Arms a stop at the next translation block of a running Unicorn engine,
    from any thread."""

    def __init__(self, uc):
        if uclib is None:  # pragma: no cover
            raise RuntimeError("this unicorn binding does not expose its C library (need unicorn 2.1)")
        self._stop = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
        self._handles = []
        native = _native_callback()
        if native is not None:
            self._page, callback = native
            self._word = ctypes.c_uint64(0)  # 0, or uc_emu_stop's address when armed
            self._add(uc, callback, ctypes.addressof(self._word))
            self._idle = 0
            self._callback = self._word
            # Translated code calls into the page and reads the word for as long as the engine lives.
            uc._nbdboot_block_stop = (self._page, self._word)
            return
        self._idle = ctypes.cast(uclib.uc_arch_supported, ctypes.c_void_p).value
        for _ in range(2):
            self._add(uc, self._idle, None)
        # uc_hook is the address of Unicorn's struct hook: check the layout by the
        # values just passed, then keep a view of its callback field.
        words = (ctypes.c_uint64 * _HOOK_WORDS).from_address(self._handles[0].value)
        if (words[0] & 0xFFFFFFFF != UC_HOOK_BLOCK or words[_BEGIN] != 1 or words[_END] != 0
                or words[_CALLBACK] != self._idle):
            raise RuntimeError("unicorn: unexpected hook layout (this needs unicorn 2.1)")
        self._callback = ctypes.c_uint64.from_address(self._handles[0].value + 8 * _CALLBACK)

    def _add(self, uc, callback: int, user_data) -> None:
        handle = uc_hook_h()
        status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK, ctypes.c_void_p(callback),
                                   ctypes.c_void_p(user_data), ctypes.c_uint64(1), ctypes.c_uint64(0))
        if status != 0:
            raise RuntimeError(f"unicorn: cannot add a block hook (error {status})")
        self._handles.append(handle)

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
