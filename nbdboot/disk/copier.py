"""The store's copier: background threads that fill a StoreDevice's ABSENT blocks from the source.

    copier = attach_copier(store, source_factory, connections=4)
    copier.start()          # returns at once; connecting happens in the background too
    copier.progress()       # (bytes local, disk size)
    copier.stats, copier.done, copier.error
    copier.stop()           # what was copied is committed: a later run resumes from here

Each worker copies on its own connection (several when the source advertises
multi-conn), and a WritebackWindow per worker keeps the page cache small.
"""

from __future__ import annotations

import mmap
import re
import threading
import time
from collections import deque

from nbdboot import interrupt
from nbdboot.disk.base import BlockDevice
from nbdboot.disk.blockmap import ABSENT, COPIED, COPIED_ZERO, GUEST, GUEST_ZERO
from nbdboot.disk.store import StoreDevice

_NOT_ABSENT = re.compile(b"[^%s]" % re.escape(bytes([ABSENT])))   # the end of an ABSENT run


class WritebackWindow:
    """The copier's written ranges, each written out as soon as it lands and dropped
    from the page cache once `limit` bytes newer than it are in flight.

    The page cache then holds a few MiB per worker instead of everything since the
    last commit: writing a GiB into fresh pages is several times slower in a VM
    whose freed memory is handed back to the host. Hints only; the commit's flush
    is what makes data durable.
    """

    def __init__(self, target: BlockDevice, limit: int = 4 << 20):
        self.target = target
        self.limit = limit
        self._ranges: deque[tuple[int, int]] = deque()
        self._bytes = 0

    def add(self, offset: int, length: int) -> None:
        self.target.start_writeback(offset, length)
        self._ranges.append((offset, length))
        self._bytes += length
        while self._bytes > self.limit and len(self._ranges) > 1:
            self._retire()

    def drain(self) -> None:
        while self._ranges:
            self._retire()

    def _retire(self) -> None:
        offset, length = self._ranges.popleft()
        self._bytes -= length
        self.target.uncache(offset, length)


class Copier:
    """Fills a store's ABSENT blocks from the source, on its own connections.

    Work is planned from block status: runs of blocks wholly inside extents that
    read as zero are zeroed on the target (a hole punch on a sparse file), the
    rest is read and written in `chunk`-sized pieces. Data reaches the target
    at once, but the map marks it only after a flush, every `commit_bytes` or
    `commit_interval` seconds.
    """

    def __init__(self, store: StoreDevice, source_factory, *, connections: int = 4,
                 chunk: int = 4 * 1024 * 1024, commit_bytes: int = 64 * 1024 * 1024,
                 commit_interval: float = 1.0):
        self.store = store
        self.map = store.map
        self.source_factory = source_factory
        self.connections = max(1, connections)
        bs = self.map.block_size
        self.chunk = max(bs, chunk // bs * bs)
        self.commit_bytes = commit_bytes
        self.commit_interval = commit_interval
        self.guest_busy_window = 0.1   # seconds since the guest's last I/O that count as busy
        self.yield_to_guest = 0.01     # pause per piece while the guest is busy
        self.stats = store.stats
        self.error: BaseException | None = None
        self.done = False
        self._stop = threading.Event()
        self.stop_after: int | None = None  # bytes; for tests of resuming
        self._plan_lock = threading.Lock()
        # Written but not flushed: runs (first, end, COPIED or COPIED_ZERO), and a byte per
        # block saying whether it is in one.
        self._pending: list[tuple[int, int, int]] = []
        self._pending_mask = bytearray(self.map.nblocks)
        self._pending_bytes = 0   # all pending, for progress
        self._pending_copied = 0  # pending data bytes: what a crash would make us fetch again
        self._last_commit = time.monotonic()
        self._threads: list[threading.Thread] = []
        self._reaper_thread: threading.Thread | None = None
        self._ended = threading.Event()   # set when the copy thread has committed and ended
        self._commit_lock = threading.Lock()
        self._flush_unlocked = store.target.flush_is_thread_safe
        self._planner = None
        self._skip_zeroes = store.target_blank   # a blank target already reads as zeroes
        self._step_window = WritebackWindow(store.target)
        self._planner_src: BlockDevice | None = None
        self._sources: list[BlockDevice] = []
        self._fetched = None   # step(): the piece its "fetch" phase read, for its "store" phase
        self.started = time.monotonic()
        self.stats.skipped_bytes = self.map.bytes_in(COPIED, COPIED_ZERO, GUEST, GUEST_ZERO)

    # -- planning ------------------------------------------------------------------
    def _plan(self, src: BlockDevice):
        """Yield (first_block, end_block, is_zero) for every ABSENT run, in disk order."""
        bs, states, n = self.map.block_size, self.map.states, self.map.nblocks
        step = max(1, self.chunk // bs)
        # Block status for a GiB takes milliseconds: the first window is small so
        # data starts flowing at once, later ones grow.
        window = 64 << 20
        i = 0
        while i < n:
            i = states.find(ABSENT, i)   # skip what is local already (a resumed copy)
            if i < 0:
                return
            limit = min(n, i + max(1, window // bs))
            local = _NOT_ABSENT.search(states, i, limit)
            j = local.start() if local else limit
            k = i
            for a, b in self._data_runs(src, i, j):
                if k < a:
                    yield k, a, True
                for c in range(a, b, step):
                    yield c, min(c + step, b), False
                k = b
            if k < j:
                yield k, j, True
            i = j
            window = min(window * 2, 1 << 30)

    def _data_runs(self, src: BlockDevice, first: int, end: int) -> list[tuple[int, int]]:
        """The runs of blocks in [first, end) that block status does not call all zero
        (a block is zero only if every byte of it is in a zero extent), in order."""
        bs, size = self.map.block_size, self.map.size
        start, stop = first * bs, min(end * bs, size)
        if not src.can_extents:
            return [(first, end)]
        runs: list[tuple[int, int]] = []

        def data(a: int, b: int) -> None:   # byte range [a, b) holds data
            ka, kb = a // bs, -(-b // bs)
            if runs and ka <= runs[-1][1]:
                runs[-1] = (runs[-1][0], max(runs[-1][1], kb))
            else:
                runs.append((ka, kb))

        pos = start
        while pos < stop:
            got = src.extents(pos, stop - pos)
            if not got:
                break
            for e in got:
                if e.offset >= stop:
                    break
                if not e.is_zero:
                    data(max(e.offset, start), min(e.end, stop))
            new_pos = max(pos, min(got[-1].end, stop))
            if new_pos <= pos:
                break  # no progress: treat the rest as data
            pos = new_pos
        if pos < stop:
            data(pos, stop)
        return runs

    def _next_item(self):
        with self._plan_lock:
            if self._planner is None:
                return None
            try:
                return next(self._planner)
            except StopIteration:
                self._planner = None
                return None

    # -- copying -------------------------------------------------------------------
    def _copy(self, src: BlockDevice, item, buf: bytearray | None, window: WritebackWindow) -> None:
        self._store(item, self._fetch(src, item, buf), window)

    def _fetch(self, src: BlockDevice, item, buf: bytearray | None = None) -> memoryview | bytearray | None:
        """Read a data item from the source, outside the store lock (the guest keeps going),
        into `buf` when it is big enough: a fresh 4 MiB buffer per piece costs a thousand
        page faults and an munmap, which made whole deploys 3-4x slower on some runs."""
        first, end, is_zero = item
        bs, states = self.map.block_size, self.map.states
        if is_zero or states.find(ABSENT, first, end) < 0:
            return None
        start = first * bs
        length = min(end * bs, self.map.size) - start
        data = memoryview(buf)[:length] if buf is not None and len(buf) >= length else bytearray(length)
        src.pread_into(data, start)
        return data

    def _store(self, item, buf: bytearray | None, window: WritebackWindow | None = None) -> None:
        """Write what is still ABSENT of an item to the target; the guest may have won some blocks."""
        first, end, is_zero = item
        if buf is None and not is_zero:
            return
        bs, store = self.map.block_size, self.store
        start = first * bs
        due = False
        written: list[tuple[int, int]] = []
        with store.lock:
            for i, j in self._free_runs(first, end):
                a, b = i * bs, min(j * bs, self.map.size)
                if is_zero:
                    if not self._skip_zeroes:
                        store.zero_target(a, b - a)
                    self.stats.zero_bytes += b - a
                else:
                    store.target.pwrite(memoryview(buf)[a - start:b - start], a)
                    written.append((a, b - a))
                    self.stats.copied_bytes += b - a
                    self._pending_copied += b - a
                    if self.stop_after is not None and self.stats.copied_bytes >= self.stop_after:
                        self._stop.set()   # as if interrupted here: what was copied is committed
                self._hold(i, j, COPIED_ZERO if is_zero else COPIED, b - a)
            due = self._due()
            if due and not self._flush_unlocked:
                self._commit()
        window = window or self._step_window
        for a, n in written:   # outside the lock: retiring a range waits for the disk
            window.add(a, n)
        if due and self._flush_unlocked:
            with self._commit_lock:
                self._commit_unlocked(only_if_due=True)

    def _free_runs(self, first: int, end: int) -> list[tuple[int, int]]:
        """Runs of blocks in [first, end) still ABSENT and not pending. Holds store.lock."""
        states, mask, n = self.map.states, self._pending_mask, end - first
        if states.count(ABSENT, first, end) == n and mask.count(0, first, end) == n:
            return [(first, end)]   # the usual case, without a loop per block
        runs = []
        i = first
        while i < end:
            if states[i] != ABSENT or mask[i]:
                i += 1
                continue
            j = i
            while j < end and states[j] == ABSENT and not mask[j]:
                j += 1
            runs.append((i, j))
            i = j
        return runs

    def _hold(self, first: int, end: int, state: int, nbytes: int) -> None:
        """Blocks [first, end) are written and wait for the next commit to be marked `state`."""
        self._pending.append((first, end, state))
        self._pending_mask[first:end] = b"\x01" * (end - first)
        self._pending_bytes += nbytes

    def _take_pending(self) -> list[tuple[int, int, int]]:
        pending, self._pending = self._pending, []
        for first, end, _ in pending:
            self._pending_mask[first:end] = bytes(end - first)
        self._pending_bytes = self._pending_copied = 0
        self._last_commit = time.monotonic()
        return pending

    def _due(self) -> bool:
        """Time to commit: commit_bytes of data since the last commit, or commit_interval.
        Zeroed ranges do not count: redoing them after a crash costs nothing, and on a
        mostly empty disk they would make a flush (an fdatasync, slow in VMs) every few pieces."""
        return bool(self._pending) and (self._pending_copied >= self.commit_bytes
                                        or time.monotonic() - self._last_commit >= self.commit_interval)

    def keep_fetched(self, data: memoryview, offset: int) -> None:
        """Store the whole blocks of a guest read from the source, as if copied: no second fetch.

        Same rules as _store: only ABSENT blocks, under the store lock, marked after a flush.
        """
        bs, size = self.map.block_size, self.map.size
        end = offset + len(data)
        first = -(-offset // bs)
        last = end // bs if end < size else self.map.nblocks
        if first >= last:
            return
        with self.store.lock:
            for i, j in self._free_runs(first, last):
                a, b = i * bs, min(j * bs, size)
                self.store.target.pwrite(data[a - offset:b - offset], a)
                self._hold(i, j, COPIED, b - a)
                self._pending_copied += b - a
                self.stats.fetched_bytes += b - a

    def _commit(self) -> None:
        """Flush the target, then let the map claim what the flush made durable. Holds store.lock."""
        if not self._pending:
            return
        self.store.target.flush()
        self._mark(self._take_pending())

    def _commit_unlocked(self, only_if_due: bool = False) -> None:
        """_commit for a file target: fdatasync without holding the store lock.

        A flush covers every write made before it, so blocks taken from
        `pending` before the flush may be marked after it; the guest keeps
        reading and writing meanwhile, and marking only touches ABSENT blocks.
        """
        with self.store.lock:
            if only_if_due and not self._due():
                return   # another worker committed while this one waited for the commit lock
            pending = self._take_pending()
        if pending:
            self.store.target.flush()
            with self.store.lock:
                self._mark(pending)

    def _mark(self, pending: list[tuple[int, int, int]]) -> None:
        """After a target flush: the map claims the flushed blocks."""
        for first, end, state in pending:
            self.map.claim_absent(first, end, state)
        self.map.sync()

    def _open_sources(self) -> None:
        first = self.source_factory()
        self._sources = [first]
        n = self.connections if first.can_multi_conn else 1
        for _ in range(n - 1):
            self._sources.append(self.source_factory())
        # With one worker it plans on its own connection; with several, block
        # status gets a connection of its own so no connection is shared by threads.
        self._planner_src = first if n == 1 else self.source_factory()
        if n > 1:
            self._sources.append(self._planner_src)
        self._planner = self._plan(self._planner_src)

    def step(self, phase: str = "all") -> bool:
        """Copy one planned piece in the caller's thread; False when nothing is left.

        Tests split a step into its phases to interleave guest I/O with them:
        "fetch" reads the next piece, "store" writes it, "commit" flushes and
        marks the map; "all" does the three.
        """
        if not self._sources:
            self._open_sources()
        if phase in ("fetch", "all"):
            item = self._next_item()
            if item is None:
                self._step_window.drain()
                with self.store.lock:
                    self._commit()
                self._finish()
                return False
            self._fetched = (item, self._fetch(self._sources[0], item))
            if phase == "fetch":
                return True
        if phase in ("store", "all") and self._fetched:
            self._store(*self._fetched)
            self._fetched = None
        if phase in ("commit", "all"):
            with self.store.lock:
                self._commit()
        return True

    def start(self) -> None:
        """Copy in background threads, one per source connection.

        Returns at once: connecting to the source happens in the background
        too, so the guest starts booting without waiting for it.
        """
        self._reaper_thread = threading.Thread(target=self._run, name="copier", daemon=True)
        self._reaper_thread.start()

    def _run(self) -> None:
        try:
            self._run_copy()
        finally:
            self._ended.set()

    def _run_copy(self) -> None:
        interrupt.watch(self._stop)   # a stop ends this thread's NBD waits within interrupt.TICK
        try:
            self._open_sources()
        except interrupt.Cancelled:
            self._close_sources()
            return
        except BaseException as e:  # noqa: BLE001 - reported through .error, the guest keeps running
            self.error = e
            self._close_sources()
            return
        workers = [s for s in self._sources if s is not self._planner_src] or [self._planner_src]
        for n, src in enumerate(workers):
            if self._stop.is_set():
                break
            t = threading.Thread(target=self._worker, args=(src, n == 0), name=f"copier-{n}", daemon=True)
            self._threads.append(t)
            t.start()
        self._reaper()

    def _worker(self, src: BlockDevice, first: bool = True) -> None:
        # Reused: _store has written it out before the next _fetch. An anonymous mapping is
        # zeroed lazily, page by page, where bytearray would touch all of it before the first read.
        interrupt.watch(self._stop)
        buf = mmap.mmap(-1, self.chunk)
        window = WritebackWindow(self.store.target)
        try:
            while not self._stop.is_set():
                if time.monotonic() - self.store.last_guest_io < self.guest_busy_window:
                    # The guest is booting or working: give it the CPU, the lock and the
                    # disk for a moment between pieces, so the copy never starves it;
                    # only the first worker copies meanwhile, on a machine of few cores.
                    self._stop.wait(self.yield_to_guest)
                    if not first:
                        continue
                item = self._next_item()
                if item is None:
                    break
                self._copy(src, item, buf, window)
            window.drain()
        except interrupt.Cancelled:
            window.drain()   # stopped mid-piece: what was stored before it still commits
        except BaseException as e:  # noqa: BLE001 - reported through .error, the guest keeps running
            self.error = e
            self._stop.set()

    def _reaper(self) -> None:
        for t in self._threads:
            t.join()
        with self.store.lock:
            try:
                self._commit()
            except BaseException as e:  # noqa: BLE001
                self.error = self.error or e
        if self.error is None:
            self._finish()   # stopped or not: a copy stopped after its last block is complete
        self._close_sources()

    def _finish(self) -> None:
        self.done = self.map.complete()

    def _close_sources(self) -> None:
        for s in self._sources:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - closing a dead connection must not mask the real error
                pass
        self._sources = []

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background copy; True when it has ended (finished, failed or stopped)."""
        # An Event, not Thread.join: a Ctrl-C that interrupts join(timeout) can leave the thread marked as
        # stopped while it runs (CPython < 3.13), after which stop() would not wait for its last commit.
        if self._reaper_thread is None or self._reaper_thread.ident is None:
            return True
        return self._ended.wait(timeout)

    @property
    def running(self) -> bool:
        return self._reaper_thread is not None and self._reaper_thread.ident is not None and not self._ended.is_set()

    def stop(self) -> None:
        """Stop copying; what was copied is committed, so a later run resumes from here."""
        self._stop.set()
        # A Ctrl-C can land between the thread's creation and its start: a thread that never started
        # (no ident yet) has nothing to join, and its work is finished here as if there were none.
        if self._reaper_thread is not None and self._reaper_thread.ident is not None:
            self._ended.wait()
        else:
            with self.store.lock:
                self._commit()
            self._finish()
            self._close_sources()

    # -- progress ----------------------------------------------------------------------
    def progress(self) -> tuple[int, int]:
        """(bytes local, disk size)."""
        with self.map.lock:
            local = self.map.size - self.map.bytes_in(ABSENT)
        return local + self._pending_bytes, self.map.size


def attach_copier(store: StoreDevice, source_factory, **kw) -> Copier:
    store.copier = Copier(store, source_factory, **kw)
    return store.copier
