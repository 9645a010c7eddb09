"""The local store: one engine behind overlays, live deploy and live restore.

A store is a *source* (the export: read only as far as we are concerned), a
*target* (any writable BlockDevice: a raw file, a block device, an NBD export,
or the data area of an overlay file) and a persistent BlockMap saying, per
block (4 KiB, more on disks over 64 GiB), whether the block is local and whether the copier or the guest
put it there. The guest sees one disk, a StoreDevice:

  * reads of local blocks come from the target, the rest from the source;
  * writes go to the target only; a write that covers part of a block that is
    not local yet first fills the rest of that block from the source, so a
    local block is always whole;
  * a background Copier (disk/copier.py; deploy/restore only) fills the remaining
    blocks from the source, writing holes/zeroes where block status says so, and
    never touches a block the guest has written.

disk/open.py builds stores (open_store, open_guest_disk); disk/overlay.py builds
the overlay kind. `sync`:

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
import re
import threading
import time
from typing import TYPE_CHECKING

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
)
from nbdboot.errors import LocalIOError, UsageError

if TYPE_CHECKING:
    from nbdboot.disk.copier import Copier

SYNC_POLICIES = ("each", "periodic")
_ZEROES = bytes(1 << 20)


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
            self.zero_target(*body)
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

    def zero_target(self, offset: int, length: int) -> None:
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
