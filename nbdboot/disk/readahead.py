"""Read-ahead for a BIOS drive: small reads served from whole windows of the disk.

Boot code reads a sector or a track at a time (a DOS boot sector loads its kernel
one sector per int 13h call, DOS reads its FAT and directories so), and over NBD
each read costs a round trip. `ReadAhead` sits between int 13h and the device:
a read smaller than a window fetches the aligned window(s) around it in one
request and keeps the last few in memory, as a kernel's page cache with
read-ahead does for a block device. Reads of a window or more go straight
through, uncached (a kernel or initrd loaded in large reads).

What the guest sees does not change:
- writes go through to the device and then into any cached window they touch;
  trim, write zeroes and int 13h reset drop the windows they touch (or all);
- a window the server fails (an EIO from nbdkit's error filter on one sector) is
  not an error for the sectors asked for: they are read on their own, so a read
  fails exactly when it would have without read-ahead. A lost connection is not
  retried here: the device underneath has its own reconnect budget.
"""

from __future__ import annotations

from collections import OrderedDict

from nbdboot.disk.base import BlockDevice, DiskError

WINDOW = 32 * 1024
WINDOWS = 256  # 8 MiB at most


class ReadAhead(BlockDevice):
    def __init__(self, inner: BlockDevice, window: int = WINDOW, windows: int = WINDOWS):
        self.inner = inner
        step = max(inner.min_block, 512)
        self.window = max(step, window - window % step)
        self.windows = max(1, windows)
        self._cache: OrderedDict[int, bytes] = OrderedDict()  # window index -> its bytes, oldest first
        self.size = inner.size
        self.read_only = inner.read_only
        for flag in ("can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_extents", "can_cache",
                     "can_multi_conn", "min_block", "preferred_block", "max_block", "created_blank",
                     "flush_is_thread_safe"):
            setattr(self, flag, getattr(inner, flag))
        self.description = inner.description
        self.fetched = 0  # windows read from the device (the tests' and the curious user's view)

    # -- reads ----------------------------------------------------------------------------------
    def pread_into(self, buf, offset: int) -> None:
        view = memoryview(buf).cast("B")
        length = len(view)
        self.check_range(offset, length)
        if length >= self.window or not length:
            self.inner.pread_into(view, offset)
            return
        window = self.window
        first, last = offset // window, (offset + length - 1) // window
        try:
            pieces = [self._window(index) for index in range(first, last + 1)]
        except DiskError:
            # One bad sector in the window must not fail the sectors asked for: read just those.
            self.inner.pread_into(view, offset)
            return
        start = offset - first * window
        if len(pieces) == 1:
            view[:] = memoryview(pieces[0])[start:start + length]
        else:
            view[:] = memoryview(b"".join(pieces))[start:start + length]

    def _window(self, index: int) -> bytes:
        data = self._cache.get(index)
        if data is not None:
            self._cache.move_to_end(index)
            return data
        at = index * self.window
        data = bytes(self.inner.pread(min(self.window, self.size - at), at))
        self.fetched += 1
        self._cache[index] = data
        if len(self._cache) > self.windows:
            self._cache.popitem(last=False)
        return data

    # -- what changes the disk: through, then the cached copy -----------------------------------------
    def pwrite(self, data, offset: int, fua: bool = False) -> None:
        view = memoryview(data).cast("B")
        try:
            self.inner.pwrite(view, offset, fua)
        except BaseException:
            self._drop(offset, len(view))
            raise
        self._patch(view, offset)

    def _indexes(self, offset: int, length: int) -> range:
        """The windows [offset, offset+length) touches."""
        return range(offset // self.window, (offset + length - 1) // self.window + 1 if length else 0)

    def _patch(self, view: memoryview, offset: int) -> None:
        window, end = self.window, offset + len(view)
        for index in self._indexes(offset, len(view)):
            cached = self._cache.get(index)
            if cached is None:
                continue
            at = index * window
            lo, hi = max(offset, at), min(end, at + len(cached))
            patched = bytearray(cached)
            patched[lo - at:hi - at] = view[lo - offset:hi - offset]
            self._cache[index] = bytes(patched)

    def _drop(self, offset: int, length: int) -> None:
        for index in self._indexes(offset, length):
            self._cache.pop(index, None)

    def trim(self, offset: int, length: int) -> None:
        self._drop(offset, length)
        self.inner.trim(offset, length)

    def zero(self, offset: int, length: int, may_trim: bool = True, fast: bool = False) -> None:
        self._drop(offset, length)
        self.inner.zero(offset, length, may_trim, fast)

    def reset(self) -> None:
        """int 13h reset: a fresh connection may see what others wrote meanwhile."""
        self._cache.clear()
        self.inner.reset()

    # -- the rest as the device does it ------------------------------------------------------------
    def flush(self) -> None:
        self.inner.flush()

    def cache(self, offset: int, length: int) -> None:
        self.inner.cache(offset, length)

    def start_writeback(self, offset: int, length: int) -> None:
        self.inner.start_writeback(offset, length)

    def uncache(self, offset: int, length: int) -> None:
        self.inner.uncache(offset, length)

    def extents(self, offset: int, length: int):
        return self.inner.extents(offset, length)

    @property
    def lost_connection(self):
        return self.inner.lost_connection

    def close(self) -> None:
        self._cache.clear()
        self.inner.close()
