"""The local store: one engine behind overlays, live deploy and live restore.

A store is a *source* (the export: read only as far as we are concerned), a
*target* (any writable BlockDevice: a raw file, a block device, an NBD export,
or the data area of an overlay file) and a persistent BlockMap saying, per
block (4 KiB, more on disks over 64 GiB), whether the block is local and whether the copier or the guest
put it there. The guest sees one disk:

  * reads of local blocks come from the target, the rest from the source;
  * writes go to the target only; a write that covers part of a block that is
    not local yet first fills the rest of that block from the source, so a
    local block is always whole;
  * a background Copier (deploy/restore only) fills the remaining blocks from
    the source, writing holes/zeroes where block status says so, and never
    touches a block the guest has written.

API for `nbdboot run` (and the deploy/restore/overlay commands):

    disk = open_guest_disk(source_factory, overlay=None, deploy_to=None,
                           map_path=None, sync="each", resume=True,
                           connections=4, since_bitmap=None)
    ...                     # a BlockDevice: hand it to the BIOS
    disk.copier             # None for overlays; .stats, .done, .error
    disk.close()            # stops the copier (resumable), syncs, closes all

`source_factory()` opens a new connection to the source each call (the copier
takes its own, several when the server advertises multi-conn); open_device(spec)
turns a URI or path into a BlockDevice. With neither overlay nor deploy_to the
source itself is returned. `source_spec` is the source's URI: recorded in a new
overlay (the default for `overlay commit`) and needed by since_bitmap, which
asks that URI for qemu:dirty-bitmap:NAME (restore: `--restore-from URI --to
TARGET` is deploy_to=TARGET with the backup as source). `sync`:

  "each"      a guest write is durable (journal fsync, data fsync, then map
              fsync) before it is acknowledged;
  "periodic"  journal, data and map are written through before acknowledging
              (a killed process loses nothing acknowledged); fsync happens on
              guest flush or FUA, within `sync_interval` seconds of a write
              (inline or from a timer thread), and at close.

Ordering (why crashes are safe, see docs/store.md): every guest write is first
recorded in the map file's one-record journal and replayed on open, so it is
applied whole or not at all. A block's map byte leaves ABSENT only after its
data is written - and, for the copier always and for guest writes under
"each", after the target is flushed. The copier writes a block only while
holding the store lock and only if it is still ABSENT, and marks it COPIED
only if it is still ABSENT, so a guest block is never overwritten or demoted.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import threading
import time
from collections import deque

from nbdboot.disk.base import (
    EXTENT_HOLE,
    EXTENT_ZERO,
    BlockDevice,
    DiskIOError,
    Extent,
)
from nbdboot.disk.blockmap import (
    ABSENT,
    COPIED,
    COPIED_ZERO,
    GUEST,
    GUEST_ZERO,
    JOURNAL_WRITE,
    JOURNAL_ZERO,
    BlockMap,
    BlockMapError,
    source_fingerprint,
)
from nbdboot import interrupt
from nbdboot.disk.file import check_file_size_fits
from nbdboot.errors import LocalIOError, UsageError

SYNC_POLICIES = ("each", "periodic")
_ZEROES = bytes(1 << 20)
_NOT_ABSENT = re.compile(b"[^%s]" % re.escape(bytes([ABSENT])))   # the end of an ABSENT run


def open_device(spec: str, *, read_only: bool = False, create_size: int | None = None,
                lock: str | None = None, client_options: dict | None = None) -> BlockDevice:
    """A URI (nbd://, nbds://, nbd+unix://) or a local path as a BlockDevice; `lock` locks a local file
    exclusively for that role (an NBD export cannot be locked: its map is); client_options go to the
    NbdClient (retries, retry_delay, timeout...)."""
    if "://" in spec:
        from nbdboot.disk.nbd import NbdDevice  # the NBD client is optional for local-only use
        dev = NbdDevice(spec, **(client_options or {}))
        if read_only:
            dev.read_only = True
        return dev
    from nbdboot.disk.file import FileDevice
    if create_size is not None and os.path.exists(spec):
        create_size = None
    return FileDevice(spec, read_only=read_only, create_size=create_size, lock=lock)


class StoreStats:
    """Byte counts for progress and the closing summary."""

    __slots__ = ("copied_bytes", "zero_bytes", "guest_bytes", "fill_bytes", "skipped_bytes", "fetched_bytes")

    def __init__(self, copied_bytes: int = 0, zero_bytes: int = 0, guest_bytes: int = 0, fill_bytes: int = 0,
                 skipped_bytes: int = 0, fetched_bytes: int = 0):
        self.copied_bytes = copied_bytes      # data read from the source and written to the target
        self.zero_bytes = zero_bytes          # blocks the copier zeroed/punched instead of copying
        self.guest_bytes = guest_bytes        # bytes the guest wrote or zeroed
        self.fill_bytes = fill_bytes          # source bytes read to complete a partly written block
        self.skipped_bytes = skipped_bytes    # already local when this run started, or clean in the bitmap
        self.fetched_bytes = fetched_bytes    # kept from guest reads of the source, not copied again

    def __repr__(self) -> str:
        return "StoreStats(" + ", ".join(f"{k}={getattr(self, k)}" for k in self.__slots__) + ")"


@contextlib.contextmanager
def _local_errors():
    """The guest sees a disk error (int 13h status), not an OSError from the overlay or target."""
    try:
        yield
    except (OSError, LocalIOError) as e:
        raise DiskIOError(f"local store: {e}") from e


class StoreDevice(BlockDevice):
    """The guest's view of source + target + map (see the module docstring)."""

    def __init__(self, source: BlockDevice, target: BlockDevice, blockmap: BlockMap, *,
                 sync: str = "each", sync_interval: float = 5.0, own_target: bool = True,
                 own_source: bool = True):
        if sync not in SYNC_POLICIES:
            raise UsageError(f"--sync must be one of {', '.join(SYNC_POLICIES)}, not {sync!r}")
        if blockmap.size != source.size:
            raise BlockMapError(
                f"{blockmap.path} was made for a {blockmap.size}-byte disk, the source has {source.size}")
        if target.size < source.size:
            raise LocalIOError(f"target {target.description or ''} is smaller ({target.size} bytes) "
                               f"than the source ({source.size} bytes)")
        if target.read_only:
            raise LocalIOError(f"target {target.description or ''} is read-only")
        self.source = source
        self.target = target
        self.map = blockmap
        self.block_size = blockmap.block_size
        self.sync_policy = sync
        self.sync_interval = sync_interval
        self.own_target = own_target
        self.own_source = own_source
        self.lock = blockmap.lock  # one lock orders target I/O and map changes
        self.stats = StoreStats()
        self.copier: "Copier | None" = None
        self._last_sync = time.monotonic()
        self._source_closed = False
        # A fresh map over a target made blank this run: blocks nobody wrote read as zeroes.
        self.target_blank = False
        self._closed = False
        self.replayed: tuple[int, int] | None = None
        self.last_guest_io = 0.0   # the copier backs off while the guest is busy

        self.size = source.size
        self.read_only = False
        self.can_flush = self.can_fua = True
        self.can_trim = self.can_zero = True
        self.can_fast_zero = False
        self.can_extents = True
        self.can_cache = False
        self.can_multi_conn = False
        self.min_block = source.min_block
        self.preferred_block = max(source.preferred_block, 4096)
        self.max_block = min(source.max_block, 32 * 1024 * 1024)
        self.description = f"{source.description} + {blockmap.path}"
        self._replay_journal()
        self._unsynced = False      # periodic: guest writes since the last sync
        self._closing = threading.Event()
        self._sync_thread: threading.Thread | None = None
        if sync == "periodic":
            self._sync_thread = threading.Thread(target=self._sync_timer, name="store-sync", daemon=True)
            self._sync_thread.start()

    def _replay_journal(self) -> None:
        """Finish the guest write a crash interrupted, so it is applied whole or not at all."""
        record = self.map.journal_read()
        if record is None:
            return
        kind, offset, length, payload = record
        with self.lock:
            if kind == JOURNAL_WRITE:
                self._apply_write(memoryview(payload), offset, True)
            else:
                self._apply_zero(offset, length)
            self.target.flush()
            self.map.sync()
            self.map.journal_clear()
        self.stats.guest_bytes = 0
        self.replayed = (offset, length)

    # -- reads -------------------------------------------------------------------
    def pread_into(self, buf, offset: int) -> None:
        view = memoryview(buf).cast("B")
        self.check_range(offset, len(view))
        self.last_guest_io = time.monotonic()
        self._maybe_drop_source()
        states, bs = self.map.states, self.block_size
        pos, end = offset, offset + len(view)
        while pos < end:
            local = states[pos // bs] != ABSENT
            run_end = pos
            while run_end < end and (states[run_end // bs] != ABSENT) == local:
                run_end = (run_end // bs + 1) * bs
            run_end = min(run_end, end)
            part = view[pos - offset:run_end - offset]
            if local:
                with self.lock, _local_errors():
                    self.target.pread_into(part, pos)
            else:
                # A block may turn local meanwhile; the source still has the same bytes.
                self.source.pread_into(part, pos)
                if self.copier is not None:
                    self.copier.keep_fetched(part, pos)
            pos = run_end

    # -- writes ------------------------------------------------------------------
    def pwrite(self, data, offset: int, fua: bool = False) -> None:
        view = memoryview(data).cast("B")
        self.check_range(offset, len(view))
        if not len(view):
            return
        self.last_guest_io = time.monotonic()
        self._maybe_drop_source()
        with self.lock, _local_errors():
            if self._needs_journal(offset, len(view)):
                self.map.journal_write(JOURNAL_WRITE, offset, len(view), view, sync=self.sync_policy == "each")
            self._apply_write(view, offset, fua)

    def _needs_journal(self, offset: int, length: int) -> bool:
        """Whether a guest operation must be journalled to be applied whole after a crash.

        Not when every block it touches is still unclaimed and their state bytes share one
        512-byte sector of the map: the one write of those bytes, after the data, commits
        it (a sector is written whole or not at all), and a crash before that leaves the
        blocks reading from the source. (The journal then still holds an older write, on
        blocks claimed since, which a replay rewrites with the same bytes; a map reset
        clears the journal.)
        """
        first, end = offset // self.block_size, (offset + length - 1) // self.block_size + 1
        at = self.map.states_offset
        return ((at + first) // 512 != (at + end - 1) // 512
                or self.map.states.count(ABSENT, first, end) != end - first)

    def _apply_write(self, view: memoryview, offset: int, fua: bool) -> None:
        head, body, tail = self._whole_blocks(offset, len(view))
        for start, length in (head, tail):
            if length:
                self._write_partial(start, view[start - offset:start - offset + length])
        if body[1]:
            self.target.pwrite(view[body[0] - offset:body[0] - offset + body[1]], body[0])
        self._commit_guest(offset, len(view), fua)
        self.stats.guest_bytes += len(view)

    def zero(self, offset: int, length: int, may_trim: bool = True, fast: bool = False) -> None:
        self.check_range(offset, length)
        if not length:
            return
        self._maybe_drop_source()
        with self.lock, _local_errors():
            if self._needs_journal(offset, length):
                self.map.journal_write(JOURNAL_ZERO, offset, length, sync=self.sync_policy == "each")
            self._apply_zero(offset, length)

    def _apply_zero(self, offset: int, length: int) -> None:
        head, body, tail = self._whole_blocks(offset, length)
        for start, n in (head, tail):
            if n:
                self._write_partial(start, memoryview(_ZEROES)[:n] if n <= len(_ZEROES) else bytes(n))
        if body[1]:
            self._zero_target(*body)
        self._commit_guest(offset, length, False, zero_range=body)
        self.stats.guest_bytes += length

    def trim(self, offset: int, length: int) -> None:
        # Our trim reads back as zeroes: a guest may rely on that, and an overlay commit stays exact.
        self.zero(offset, length)

    def _whole_blocks(self, offset: int, length: int):
        """Split a range into (partial head, whole blocks, partial tail), each (start, length)."""
        bs, end = self.block_size, offset + length
        first, last = offset // bs, (end - 1) // bs

        def whole(i: int) -> bool:
            return offset <= i * bs and end >= min((i + 1) * bs, self.size)

        head = tail = (0, 0)
        body_start, body_end = first, last + 1
        if not whole(first):
            head = (offset, min(end, (first + 1) * bs) - offset)
            body_start = first + 1
        if last >= body_start and not whole(last):
            tail = (last * bs, end - last * bs)
            body_end = last
        if body_end <= body_start:
            return head, (0, 0), tail
        a = body_start * bs
        return head, (a, min(body_end * bs, end) - a), tail

    def _write_partial(self, start: int, piece: memoryview | bytes) -> None:
        """Write part of one block; a block not yet local is completed from the source first."""
        index = start // self.block_size
        if self.map.states[index] == ABSENT:
            bstart, blen = self.map.block_span(index)
            block = bytearray(blen)
            self.source.pread_into(block, bstart)
            self.stats.fill_bytes += blen
            block[start - bstart:start - bstart + len(piece)] = piece
            self.target.pwrite(block, bstart)
        else:
            self.target.pwrite(piece, start)

    def _commit_guest(self, offset: int, length: int, fua: bool, zero_range=(0, 0)) -> None:
        """Make the map say GUEST for the touched blocks, in the order the sync policy needs."""
        blocks = self.map.block_range(offset, length)
        zfirst = zero_range[0] // self.block_size
        zend = zfirst + -(-zero_range[1] // self.block_size) if zero_range[1] else zfirst
        want = bytes(GUEST_ZERO if zfirst <= i < zend else GUEST for i in blocks)
        changing = want != self.map.states[blocks.start:blocks.stop]
        durable = self.sync_policy == "each" or fua
        if durable:
            # Data before map: after a power loss the map never claims data the disk lacks.
            self.target.flush()
        if changing:
            self.map.set_states(blocks.start, want)   # one write: within a sector it cannot tear
        if durable:
            if changing:
                self.map.sync()
            self._last_sync = time.monotonic()
            self._unsynced = False
        else:
            self._unsynced = True
            self._maybe_periodic_sync()

    def _zero_target(self, offset: int, length: int) -> None:
        if self.target.can_zero:
            self.target.zero(offset, length, may_trim=True)
            return
        end = offset + length
        while offset < end:
            n = min(len(_ZEROES), end - offset)
            self.target.pwrite(memoryview(_ZEROES)[:n], offset)
            offset += n

    # -- durability ----------------------------------------------------------------
    def flush(self) -> None:
        with self.lock, _local_errors():
            self.target.flush()
            self.map.sync()
            self._last_sync = time.monotonic()
            self._unsynced = False

    def _maybe_periodic_sync(self) -> None:
        if time.monotonic() - self._last_sync >= self.sync_interval:
            self.target.flush()
            self.map.sync()
            self._last_sync = time.monotonic()
            self._unsynced = False

    def _sync_timer(self) -> None:
        """`--sync periodic`: a guest that writes and then goes quiet still has its writes
        synced within about sync_interval, not only at its next write or at close."""
        while not self._closing.wait(min(self.sync_interval / 2, 0.5)):
            with self.lock:
                if self._closed:
                    return
                if not self._unsynced:
                    continue
                try:
                    self._maybe_periodic_sync()
                except Exception:  # noqa: BLE001 - the guest's next flush or write meets the same error
                    return

    # -- metadata ------------------------------------------------------------------
    def extents(self, offset: int, length: int) -> list[Extent]:
        self.check_range(offset, length)
        out: list[Extent] = []
        bs, states, end = self.block_size, self.map.states, offset + length
        pos = offset
        while pos < end:
            state = states[pos // bs]
            run_end = pos
            while run_end < end and states[run_end // bs] == state:
                run_end = (run_end // bs + 1) * bs
            run_end = min(run_end, end)
            if state == ABSENT:
                if self.source.can_extents:
                    got = self.source.extents(pos, run_end - pos)
                    out.extend(got)
                    if not got or got[-1].end < run_end:
                        return out  # callers ask again from the end
                else:
                    out.append(Extent(pos, run_end - pos, 0))
            elif state in (COPIED_ZERO, GUEST_ZERO):
                out.append(Extent(pos, run_end - pos, EXTENT_HOLE | EXTENT_ZERO))
            else:
                out.append(Extent(pos, run_end - pos, 0))
            pos = run_end
        return out

    def _maybe_drop_source(self) -> None:
        """Once every block is local the source connection is not needed any more."""
        if not self._source_closed and self.copier is not None and self.copier.done and self.map.complete():
            self._source_closed = True
            if self.own_source:
                self.source.close()

    @property
    def complete(self) -> bool:
        return self.map.complete()

    @property
    def lost_connection(self):
        """The guest's blocks not yet local come from the source: its connection is the one that can die."""
        return None if self._source_closed else self.source.lost_connection

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        if self._sync_thread is not None:
            self._sync_thread.join()   # outside the lock: it may be waiting for it
        try:
            if self.copier is not None:
                self.copier.stop()
            with self.lock:
                self.target.flush()
                self.map.sync()
                self.map.journal_clear()
        finally:
            self.map.close()
            if self.own_target:
                self.target.close()
            if self.own_source and not self._source_closed:
                self.source.close()


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
                        store._zero_target(a, b - a)
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
        if phase in ("store", "all") and getattr(self, "_fetched", None):
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


def default_map_path(target: str) -> str:
    if "://" in target:
        raise UsageError("an NBD target needs --map PATH for its block map")
    return target + ".nbdboot-map"


def open_store(source: BlockDevice, target_spec: str, *, map_path: str | None = None,
               sync: str = "each", resume: bool = True, block_size: int | None = None,
               source_spec: str = "", own_source: bool = True) -> StoreDevice:
    """Source + TARGET + map as a StoreDevice; a new map when none exists (or resume=False)."""
    map_path = map_path or default_map_path(target_spec)
    if "://" not in target_spec:
        check_file_size_fits(target_spec, source.size)
    fresh = not (resume and os.path.exists(map_path))
    blockmap = None
    if not fresh:
        # Check the map before the target is touched (or created).
        blockmap = BlockMap.open_for(map_path, source, overlay=False)
    try:
        target = open_device(target_spec, create_size=source.size, lock="deploy/restore target")
    except BaseException:
        if blockmap:
            blockmap.close()
        raise
    try:
        if fresh:
            blockmap = BlockMap.create(map_path, source.size, block_size=block_size, source=source_spec,
                                       fingerprint=source_fingerprint(source),
                                       replace=os.path.exists(map_path))   # --restart
        try:
            store = StoreDevice(source, target, blockmap, sync=sync, own_source=own_source)
        except BaseException:
            blockmap.close()
            raise
    except BaseException:
        target.close()
        raise
    store.fresh_map = fresh
    store.target_blank = fresh and target.created_blank
    return store


def mark_clean_from_bitmap(store: StoreDevice, dirty) -> int:
    """Mark the blocks outside `dirty` (Extents from dirty_extents) as local.

    Only for a fresh map: a restore onto the machine's own disk, where the
    target already holds the backup as of the bitmap's creation. Returns the
    bytes left to copy.
    """
    bs, n = store.map.block_size, store.map.nblocks
    dirty_blocks = bytearray(n)
    for ext in dirty:
        first = min(ext.offset // bs, n)
        end = min(-(-(ext.offset + ext.length) // bs), n)
        dirty_blocks[first:end] = b"\x01" * (end - first)
    with store.lock:
        for clean in re.finditer(b"\x00+", dirty_blocks):
            store.map.claim_absent(clean.start(), clean.end(), COPIED)
        store.map.sync()
    store.stats.skipped_bytes = store.map.bytes_in(COPIED, COPIED_ZERO, GUEST, GUEST_ZERO)
    return store.size - store.stats.skipped_bytes


def open_guest_disk(source_factory, *, overlay: str | None = None, deploy_to: str | None = None,
                    map_path: str | None = None, sync: str = "each", resume: bool = True,
                    connections: int = 4, since_bitmap: str | None = None,
                    source_spec: str = "", start_copier: bool = True) -> BlockDevice:
    """The disk `nbdboot run` boots: the source alone, with an overlay, or while deploying."""
    if overlay and deploy_to:
        raise UsageError("--overlay and --deploy-to cannot be combined")
    dirty = None
    if since_bitmap and deploy_to:
        # Before any other connection: qemu-nbd serves one client at a time unless -e N.
        from nbdboot.disk.dirty import dirty_extents
        dirty = dirty_extents(source_spec, since_bitmap)
    source = source_factory()
    try:
        if overlay:
            from nbdboot.disk.overlay import open_overlay
            return open_overlay(source, overlay, sync=sync, source_spec=source_spec)
        if not deploy_to:
            return source
        store = open_store(source, deploy_to, map_path=map_path, sync=sync, resume=resume,
                           source_spec=source_spec)
    except BaseException:
        source.close()
        raise
    try:
        if dirty is not None and store.fresh_map:
            mark_clean_from_bitmap(store, dirty)
        copier = attach_copier(store, source_factory, connections=connections)
        if start_copier:
            copier.start()
    except BaseException:
        store.close()
        raise
    return store

