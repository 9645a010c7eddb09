"""Overlay files: the guest's writes kept locally, the export left pristine.

An overlay is one file: the BlockMap header and state bytes, then (aligned to
1 MiB) a sparse data area as large as the disk, where block N lives at
data_offset + N * block_size. Only GUEST/GUEST_ZERO blocks are ever local in an
overlay (there is no copier), so the map doubles as the list of what to commit.
"""

from __future__ import annotations

import os

from nbdboot.disk.base import BlockDevice
from nbdboot.disk.blockmap import (
    GUEST,
    GUEST_ZERO,
    BlockMap,
    BlockMapError,
    source_fingerprint,
)
from nbdboot.disk.file import FileDevice, check_file_size_fits
from nbdboot.disk.store import StoreDevice


class WindowDevice(BlockDevice):
    """`size` bytes of another device starting at `base` (the overlay's data area)."""

    def __init__(self, inner: BlockDevice, base: int, size: int):
        self.inner, self.base, self.size = inner, base, size
        for flag in ("read_only", "can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero",
                     "can_extents", "can_cache"):
            setattr(self, flag, getattr(inner, flag))
        self.description = inner.description
        self.flush_is_thread_safe = inner.flush_is_thread_safe

    def pread_into(self, buf, offset: int) -> None:
        self.check_range(offset, len(memoryview(buf)))
        self.inner.pread_into(buf, self.base + offset)

    def pwrite(self, data, offset: int, fua: bool = False) -> None:
        self.check_range(offset, len(memoryview(data)))
        self.inner.pwrite(data, self.base + offset, fua)

    def flush(self) -> None:
        self.inner.flush()

    def trim(self, offset: int, length: int) -> None:
        self.check_range(offset, length)
        self.inner.trim(self.base + offset, length)

    def zero(self, offset: int, length: int, may_trim: bool = True, fast: bool = False) -> None:
        self.check_range(offset, length)
        self.inner.zero(self.base + offset, length, may_trim, fast)

    def close(self) -> None:
        self.inner.close()


def open_overlay(source: BlockDevice, path: str, *, sync: str = "each", source_spec: str = "",
                 block_size: int | None = None, own_source: bool = True) -> StoreDevice:
    """The guest disk `source` + overlay FILE; FILE is created on first use and reused after
    (with the block size it was made with)."""
    if os.path.isdir(path):
        raise BlockMapError(f"{path} is a directory, not an overlay")
    if os.path.exists(path) and os.path.getsize(path) == 0:
        # An overlay is never empty, not even a new one: this file was truncated, or is not ours.
        raise BlockMapError(f"{path} is empty (0 bytes), not an overlay: delete it to start a new one")
    if os.path.exists(path):
        blockmap = BlockMap.open_for(path, source, overlay=True)
    else:
        check_file_size_fits(path, source.size + (64 << 20))   # the data area, after the map
        blockmap = BlockMap.create(path, source.size, block_size=block_size, overlay=True,
                                   source=source_spec, fingerprint=source_fingerprint(source))
    try:
        data = FileDevice(path)
        target = WindowDevice(data, blockmap.data_offset, blockmap.size)
    except BaseException:
        blockmap.close()
        raise
    try:
        return StoreDevice(source, target, blockmap, sync=sync, own_source=own_source)
    except BaseException:
        blockmap.close()
        target.close()
        raise


class OverlayInfo:
    __slots__ = ("path", "source", "size", "block_size", "guest_blocks", "zero_blocks", "file_bytes")

    def __init__(self, path: str, source: str, size: int, block_size: int, guest_blocks: int,
                 zero_blocks: int, file_bytes: int):
        self.path = path
        self.source = source
        self.size = size
        self.block_size = block_size
        self.guest_blocks = guest_blocks
        self.zero_blocks = zero_blocks
        self.file_bytes = file_bytes      # space the overlay file takes on disk

    def __repr__(self) -> str:
        return (f"OverlayInfo({self.path!r}, source={self.source!r}, size={self.size}, "
                f"guest_blocks={self.guest_blocks}, zero_blocks={self.zero_blocks})")

    @property
    def guest_bytes(self) -> int:
        return (self.guest_blocks + self.zero_blocks) * self.block_size


def overlay_info(path: str) -> OverlayInfo:
    blockmap = BlockMap.open(path, read_only=True)
    try:
        if not blockmap.is_overlay:
            raise BlockMapError(f"{path} is a deploy map, not an overlay")
        st = os.stat(path)
        return OverlayInfo(path, blockmap.source, blockmap.size, blockmap.block_size,
                           blockmap.count(GUEST), blockmap.count(GUEST_ZERO), st.st_blocks * 512)
    finally:
        blockmap.close()


def guest_runs(blockmap: BlockMap):
    """Yield (offset, length, state) for runs of GUEST or GUEST_ZERO blocks."""
    states, n = blockmap.states, blockmap.nblocks
    i = 0
    while i < n:
        s = states[i]
        if s not in (GUEST, GUEST_ZERO):
            i += 1
            continue
        j = i
        while j < n and states[j] == s:
            j += 1
        start = i * blockmap.block_size
        yield start, min(j * blockmap.block_size, blockmap.size) - start, s
        i = j


def commit_overlay(path: str, dest: BlockDevice, *, keep: bool = False, chunk: int = 4 << 20,
                   progress=None) -> dict:
    """Push the guest's blocks to `dest` (the writable export); then empty the overlay unless keep.

    Data blocks go as WRITE. Blocks the guest zeroed or trimmed go as
    WRITE_ZEROES allowing the server to punch (our trim reads back as zeroes,
    and a server's TRIM need not, so TRIM alone would not be faithful); a
    server without WRITE_ZEROES gets a WRITE of zeroes.
    """
    blockmap = BlockMap.open(path)
    if blockmap.is_overlay and blockmap.journal_read() is not None:
        # A run that did not close left its last guest write in the journal, maybe torn in the
        # data area: finish it first, with the export as the source (the fingerprint check
        # refuses another export).
        blockmap.close()
        open_overlay(dest, path, own_source=False).close()
        blockmap = BlockMap.open(path)
    try:
        if not blockmap.is_overlay:
            raise BlockMapError(f"{path} is a deploy map, not an overlay")
        if dest.size != blockmap.size:
            raise BlockMapError(f"{path} belongs to a {blockmap.size}-byte disk, "
                                f"the export has {dest.size} bytes")
        if dest.read_only:
            raise BlockMapError("the export is read-only: commit needs a writable export")
        # As `run --overlay` does: blocks written over one disk's contents must not land on another's.
        blockmap.check_source(source_fingerprint(dest))
        data = FileDevice(path, read_only=True)
        stats = {"written": 0, "zeroed": 0}
        try:
            buf = bytearray(chunk)
            for start, length, state in guest_runs(blockmap):
                if state == GUEST_ZERO:
                    _zero(dest, start, length)
                    stats["zeroed"] += length
                    continue
                pos = start
                while pos < start + length:
                    n = min(chunk, start + length - pos, dest.max_block)
                    view = memoryview(buf)[:n]
                    data.pread_into(view, blockmap.data_offset + pos)
                    dest.pwrite(view, pos)
                    stats["written"] += n
                    pos += n
                    if progress:
                        progress(stats)
            dest.flush()
            blockmap.set_fingerprint(source_fingerprint(dest))
        finally:
            data.close()
        if not keep:
            _discard(blockmap)
        return stats
    finally:
        blockmap.close()


def _zero(dest: BlockDevice, offset: int, length: int) -> None:
    if dest.can_zero:
        dest.zero(offset, length, may_trim=True)
        return
    zeroes = bytes(min(length, 1 << 20))
    end = offset + length
    while offset < end:
        n = min(len(zeroes), end - offset)
        dest.pwrite(zeroes[:n], offset)
        offset += n


def discard_overlay(path: str) -> int:
    """Forget the guest's writes; returns the bytes thrown away."""
    blockmap = BlockMap.open(path)
    try:
        if not blockmap.is_overlay:
            raise BlockMapError(f"{path} is a deploy map, not an overlay")
        dropped = (blockmap.count(GUEST) + blockmap.count(GUEST_ZERO)) * blockmap.block_size
        _discard(blockmap)
        return dropped
    finally:
        blockmap.close()


def _discard(blockmap: BlockMap) -> None:
    # Map first: once it says ABSENT the data area is dead, whatever a crash leaves in it.
    blockmap.reset()
    blockmap.journal_clear()  # else the next open would replay the last write
    blockmap.sync()
    data = FileDevice(blockmap.path)
    try:
        data.trim(blockmap.data_offset, blockmap.size)
        data.flush()
    finally:
        data.close()
