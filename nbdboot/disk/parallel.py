"""`nbdboot copy --connections N`: the copy split into N contiguous ranges, one connection and copier each.

As nbdcopy does, several connections are used only when every NBD end advertises multi-conn (a server that
does not may not keep connections consistent); otherwise, and for local-only copies, one. Each range's
copier is the ordinary pipelined one (disk/copy.py's Copier) restricted to its range.
"""

from __future__ import annotations

import threading
import time

from nbdboot import interrupt
from nbdboot.disk import copy as C

_ALIGN = 1 << 20   # range boundaries: whole MiB, so no request straddles two ranges


class RangeCopier(C.Copier):
    """The Copier over [start, end) of the source only."""

    def __init__(self, src, dst, start: int, end: int, **kw):
        super().__init__(src, dst, **kw)
        self.start, self.end = start, end

    def _plan(self):
        pos = self.start
        while pos < self.end:
            window = min(C.PLAN_WINDOW, self.end - pos)
            exts = self.src.extents(pos, window) if self.use_extents else [(pos, window, False)]
            for off, n, zero in exts:
                n = min(n, self.end - off)
                if n <= 0:
                    break
                yield off, n, zero
                pos = off + n
            if not exts:
                yield pos, window, False
                pos += window


def _multi_conn(end) -> bool:
    return not isinstance(end, C.NbdEnd) or end.c.can_multi_conn


def _reopen_destination(spec: str, first, size: int, opts: dict):
    """Another handle on the destination the first open_destination created and sized."""
    if isinstance(first, C.NbdEnd):
        return C.open_destination(spec, size, **opts)
    if isinstance(first.dev, C.NullDevice):
        return C.LocalEnd(C.NullDevice())
    from nbdboot.disk.file import FileDevice
    end = C.LocalEnd(FileDevice(spec))
    end.fresh = first.fresh
    return end


def copy_parallel(src_spec: str, dst_spec: str, connections: int, *, progress=None, client_options=None,
                  **kw) -> C.CopyResult:
    """copy() over up to `connections` connections; one when an NBD end lacks multi-conn or the source is
    small."""
    opts = dict(client_options or {})
    C.refuse_same_disk(src_spec, dst_spec)
    t0 = time.monotonic()
    srcs = [C.open_source(src_spec, **opts)]
    dsts = []
    try:
        size = srcs[0].size
        dsts.append(C.open_destination(dst_spec, size, **opts))
        n = max(1, min(connections, size // _ALIGN or 1))
        if not (_multi_conn(srcs[0]) and _multi_conn(dsts[0])):
            n = 1
        if n == 1:
            return C.Copier(srcs[0], dsts[0], progress=progress, **kw).run()
        for _ in range(n - 1):
            srcs.append(C.open_source(src_spec, **opts))
            dsts.append(_reopen_destination(dst_spec, dsts[0], size, opts))
        step = -(-size // n // _ALIGN) * _ALIGN
        copiers = [RangeCopier(s, d, i * step, min(size, (i + 1) * step), **kw)
                   for i, (s, d) in enumerate(zip(srcs, dsts))]
        lock = threading.Lock()

        def tick(_done, _total):
            if progress is not None:
                with lock:
                    progress(sum(c.done_bytes for c in copiers), size)

        for c in copiers:
            c.progress = tick
        errors: list[BaseException] = []

        def work(c):
            try:
                c.run()
            except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(c,), daemon=True, name="nbdboot-copy") for c in copiers]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
                interrupt.check()   # Ctrl-C, SIGTERM and copy --timeout reach the waiting main thread
        if errors:
            raise errors[0]
        return C.CopyResult(size, sum(c.data_bytes for c in copiers), sum(c.zero_bytes for c in copiers),
                            time.monotonic() - t0)
    finally:
        for end in dsts + srcs:
            C.close_end(end)
