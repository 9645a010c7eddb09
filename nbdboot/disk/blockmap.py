"""The persistent map of a local store: one state byte per block.

A store (overlay, deploy, restore) keeps the disk in fixed-size blocks (4 KiB,
or more on disks over 64 GiB: see block_size_for). Each block is in one of these states:

  ABSENT      not local: read it from the source
  COPIED      the copier put the source's data in the target
  COPIED_ZERO the source reads as zeroes here; the target was zeroed/punched
  GUEST       the guest wrote (part of) it; the whole block is in the target
  GUEST_ZERO  the guest zeroed or trimmed the whole block

A state byte only ever leaves ABSENT after the block's data is in the target,
and the engine writes the byte (pwrite) before it acknowledges anything that
depends on it; a single byte cannot tear, so after a crash the map never
claims a block whose data was not written first.

On disk the map is a 4 KiB header followed by the state bytes. The header is
the same for a map file of its own (deploy/restore, beside TARGET) and for an
overlay file, where the data area follows the map at `data_offset`.

After everything else the file holds a one-record journal: the guest write in
progress (offset, length, payload, CRC). The engine writes it before touching
the target, so a write torn by a crash is replayed whole when the store is
opened again; a torn record fails its CRC and its write never began.
"""

from __future__ import annotations

import errno
import os
import re
import struct
import threading
import zlib

from nbdboot.disk.lock import FileInUse, lock_exclusive
from nbdboot.errors import LocalIOError, UsageError

ABSENT = 0
COPIED = 1
COPIED_ZERO = 2
GUEST = 3
GUEST_ZERO = 4

_ABSENT_RUN = re.compile(b"%s+" % re.escape(bytes([ABSENT])))

# Blocks are 4 KiB, the unit most guests write: a guest write that covers part of a block
# not yet local must first read the rest of it from the source (one round trip, as qcow2's
# copy-on-write of a cluster). The map is a byte per block, kept in memory, so past 16 Mi
# blocks (a 64 GiB disk) the blocks grow instead.
MIN_BLOCK_SIZE = 4096
MAX_BLOCKS = 16 << 20


def block_size_for(disk_size: int) -> int:
    """The block size of a new map for a disk of `disk_size` bytes."""
    bs = MIN_BLOCK_SIZE
    while -(-disk_size // bs) > MAX_BLOCKS:
        bs *= 2
    return bs

HEADER_SIZE = 4096
MAX_DISK_SIZE = (1 << 63) - 1   # the NBD limit
MAGIC_MAP = b"NBDBMAP1"
MAGIC_OVERLAY = b"NBDBOVL1"

# magic, version, block_size, disk size, states offset, data offset, source
# fingerprint (sha256 of the source's first and last 64 KiB), source name length
_HEADER = struct.Struct("<8sIIQQQ32sH")
_VERSION = 1

# magic, kind, offset, length, crc32 of (kind, offset, length, payload)
_JOURNAL = struct.Struct("<4sIQQI")
_JOURNAL_MAGIC = b"NBDJ"
JOURNAL_WRITE = 1
JOURNAL_ZERO = 2


class BlockMapError(UsageError):
    """The map or overlay file is not ours, or does not fit this disk."""


class BlockMap:
    """Block states in memory, mirrored byte for byte into a file.

    Thread-safe for `set_*`/`sync`; readers of `states` hold `lock` when they
    need a consistent view of several blocks.
    """

    def __init__(self, fd: int, *, magic: bytes, size: int, block_size: int,
                 states_offset: int, data_offset: int, source: str, states: bytearray,
                 path: str, fingerprint: bytes = bytes(32)):
        self.fd = fd
        self.magic = magic
        self.size = size
        self.block_size = block_size
        self.states_offset = states_offset
        self.data_offset = data_offset
        self.source = source
        self.fingerprint = fingerprint
        self.states = states
        self.path = path
        self.lock = threading.RLock()
        self.nblocks = len(states)

    # -- creation ----------------------------------------------------------------
    @classmethod
    def create(cls, path: str, size: int, *, block_size: int | None = None,
               overlay: bool = False, source: str = "", fingerprint: bytes = bytes(32),
               replace: bool = False) -> "BlockMap":
        block_size = block_size or block_size_for(size)
        if block_size <= 0 or block_size & (block_size - 1) or block_size < 512:
            raise UsageError(f"block size {block_size} is not a power of two >= 512")
        nblocks = -(-size // block_size)
        data_offset = 0
        if overlay:
            # Align the data area to 1 MiB so guest blocks map to whole filesystem blocks.
            data_offset = -(-(HEADER_SIZE + nblocks) // (1 << 20)) * (1 << 20)
        src = source.encode()[:HEADER_SIZE - _HEADER.size]
        header = _HEADER.pack(MAGIC_OVERLAY if overlay else MAGIC_MAP, _VERSION, block_size,
                              size, HEADER_SIZE, data_offset, fingerprint, len(src)) + src
        # A name of our own: two processes creating the same overlay at once must not share one.
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.pwrite(fd, header.ljust(HEADER_SIZE, b"\0"), 0)
                os.ftruncate(fd, HEADER_SIZE + nblocks if not overlay else data_offset + size)
                os.fsync(fd)
            finally:
                os.close(fd)
            # A crash mid-create leaves no half-made map at PATH. Unless told to replace a map
            # (--restart, under the target's lock), PATH must still not exist: link() fails where
            # rename() would silently replace the map of whoever created it meanwhile.
            if replace:
                os.rename(tmp, path)
            else:
                os.link(tmp, path)
                os.unlink(tmp)
            _fsync_dir(path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if e.errno == errno.EEXIST:
                raise FileInUse(f"{path} was just created by another process") from None
            hint = " (larger than this filesystem allows)" if e.errno == errno.EFBIG else ""
            raise LocalIOError(f"cannot create {path}: {e.strerror}{hint}") from None
        return cls.open(path)

    @classmethod
    def open(cls, path: str, *, read_only: bool = False) -> "BlockMap":
        try:
            fd = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
        except OSError as e:
            raise LocalIOError(f"cannot open {path}: {e.strerror}") from None
        try:
            head = os.pread(fd, HEADER_SIZE, 0)
            if len(head) < _HEADER.size:
                raise BlockMapError(f"{path}: too short to be an nbdboot map or overlay")
            magic, version, block_size, size, states_offset, data_offset, fingerprint, srclen = \
                _HEADER.unpack_from(head)
            if magic not in (MAGIC_MAP, MAGIC_OVERLAY):
                raise BlockMapError(f"{path}: not an nbdboot map or overlay (bad magic)")
            if version != _VERSION:
                raise BlockMapError(f"{path}: map version {version} is not supported")
            if block_size < 512 or block_size & (block_size - 1):
                raise BlockMapError(f"{path}: corrupt header (block size {block_size})")
            if size > MAX_DISK_SIZE or states_offset < HEADER_SIZE or (data_offset and data_offset < states_offset):
                raise BlockMapError(f"{path}: corrupt header (disk size {size}, offsets {states_offset}/{data_offset})")
            if not read_only:
                lock_exclusive(fd, path, "overlay" if magic == MAGIC_OVERLAY else "block map")
            if magic == MAGIC_OVERLAY and os.fstat(fd).st_size < data_offset + size:
                raise BlockMapError(f"{path}: truncated overlay ({os.fstat(fd).st_size} bytes, its "
                                    f"{size}-byte disk needs {data_offset + size})")
            nblocks = -(-size // block_size)
            states = bytearray(os.pread(fd, nblocks, states_offset))
            if len(states) != nblocks:
                raise BlockMapError(f"{path}: truncated map ({len(states)} of {nblocks} blocks)")
            if any(b > GUEST_ZERO for b in set(states)):
                raise BlockMapError(f"{path}: corrupt map (unknown block state)")
            source = head[_HEADER.size:_HEADER.size + srclen].decode(errors="replace")
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, magic=magic, size=size, block_size=block_size,
                   states_offset=states_offset, data_offset=data_offset, source=source,
                   fingerprint=fingerprint,
                   states=states, path=path)

    @property
    def journal_offset(self) -> int:
        end = max(self.states_offset + self.nblocks, self.data_offset + self.size if self.data_offset else 0)
        return -(-end // 4096) * 4096

    def journal_write(self, kind: int, offset: int, length: int, payload: bytes | memoryview = b"",
                      sync: bool = True) -> None:
        crc = zlib.crc32(payload, zlib.crc32(struct.pack("<IQQ", kind, offset, length)))
        head = _JOURNAL.pack(_JOURNAL_MAGIC, kind, offset, length, crc)
        try:
            os.pwritev(self.fd, [head, payload], self.journal_offset)
            if sync:
                os.fdatasync(self.fd)
        except OSError as e:
            raise LocalIOError(f"cannot write journal in {self.path}: {e.strerror}") from None

    def journal_read(self):
        """The last journalled write as (kind, offset, length, payload), or None."""
        head = os.pread(self.fd, _JOURNAL.size, self.journal_offset)
        if len(head) < _JOURNAL.size:
            return None
        magic, kind, offset, length, crc = _JOURNAL.unpack(head)
        if magic != _JOURNAL_MAGIC or kind not in (JOURNAL_WRITE, JOURNAL_ZERO) or offset + length > self.size:
            return None
        payload = b""
        if kind == JOURNAL_WRITE:
            payload = os.pread(self.fd, length, self.journal_offset + _JOURNAL.size)
            if len(payload) != length:
                return None
        if zlib.crc32(payload, zlib.crc32(struct.pack("<IQQ", kind, offset, length))) != crc:
            return None
        return kind, offset, length, payload

    def journal_clear(self) -> None:
        try:
            os.pwrite(self.fd, bytes(_JOURNAL.size), self.journal_offset)
        except OSError as e:
            raise LocalIOError(f"cannot clear journal in {self.path}: {e.strerror}") from None

    def set_fingerprint(self, fingerprint: bytes) -> None:
        """After an overlay commit the export's contents changed: adopt the new ones."""
        offset = struct.calcsize("<8sIIQQQ")
        try:
            os.pwrite(self.fd, fingerprint, offset)
            os.fdatasync(self.fd)
        except OSError as e:
            raise LocalIOError(f"cannot update {self.path}: {e.strerror}") from None
        self.fingerprint = fingerprint

    def check_source(self, fingerprint: bytes) -> None:
        """Refuse a map or overlay made from other source contents (same size or not)."""
        if self.fingerprint != bytes(32) and fingerprint != self.fingerprint:
            kind = "overlay" if self.is_overlay else "map"
            raise BlockMapError(
                f"{self.path}: this {kind} was made from a different source (its first/last "
                f"64 KiB differ)" + ("" if self.is_overlay else "; use --restart to copy anew"))

    @classmethod
    def open_for(cls, path: str, source, *, overlay: bool) -> "BlockMap":
        """PATH reopened for `source`: the kind asked for, made for a disk of its size and contents."""
        blockmap = cls.open(path)
        try:
            if blockmap.is_overlay != overlay:
                raise BlockMapError(f"{path} is a deploy map, not an overlay" if overlay
                                    else f"{path} is an overlay, not a deploy map")
            if blockmap.size != source.size:
                raise BlockMapError(f"{path} was made for a {blockmap.size}-byte disk, "
                                    f"the {'export' if overlay else 'source'} has {source.size} bytes")
            blockmap.check_source(source_fingerprint(source))
        except BaseException:
            blockmap.close()
            raise
        return blockmap

    @property
    def is_overlay(self) -> bool:
        return self.magic == MAGIC_OVERLAY

    # -- queries -----------------------------------------------------------------
    def block_range(self, offset: int, length: int) -> range:
        """Indices of the blocks touching [offset, offset+length)."""
        if length <= 0:
            return range(0)
        return range(offset // self.block_size, (offset + length - 1) // self.block_size + 1)

    def block_span(self, index: int) -> tuple[int, int]:
        start = index * self.block_size
        return start, min(self.block_size, self.size - start)

    def count(self, *wanted: int) -> int:
        return sum(self.states.count(s) for s in wanted)

    def bytes_in(self, *wanted: int) -> int:
        """Bytes covered by blocks in these states (the short last block counted exactly)."""
        total = self.count(*wanted) * self.block_size
        if self.nblocks and self.states[-1] in wanted:
            total -= self.nblocks * self.block_size - self.size
        return total

    def complete(self) -> bool:
        return ABSENT not in self.states

    # -- updates -----------------------------------------------------------------
    def claim_absent(self, first: int, end: int, state: int) -> None:
        """Blocks of [first, end) still ABSENT take `state`, one write per run: the copier
        marks what it copied and never demotes a block the guest claimed meanwhile."""
        with self.lock:
            for a, b in [m.span() for m in _ABSENT_RUN.finditer(self.states, first, end)]:
                self.states[a:b] = bytes([state]) * (b - a)
                self._write(a, b)

    def set_states(self, first: int, states: bytes) -> None:
        """Blocks from `first` take these states, in one write."""
        with self.lock:
            self.states[first:first + len(states)] = states
            self._write(first, first + len(states))

    def reset(self) -> None:
        with self.lock:
            self.states[:] = bytes(self.nblocks)
            self._write(0, self.nblocks)

    def _write(self, first: int, end: int) -> None:
        try:
            os.pwrite(self.fd, self.states[first:end], self.states_offset + first)
        except OSError as e:
            raise LocalIOError(f"cannot update map {self.path}: {e.strerror}") from None

    def sync(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as e:
            raise LocalIOError(f"cannot sync map {self.path}: {e.strerror}") from None

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.fdatasync(self.fd)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = -1


def _sha256(data: bytes):
    # hashlib loads OpenSSL, a few ms of every deploy's start-up; CPython's own
    # module gives the same digest.
    try:
        from _sha2 import sha256          # Python 3.12+
    except ImportError:
        try:
            from _sha256 import sha256    # Python 3.10, 3.11
        except ImportError:
            from hashlib import sha256
    return sha256(data)


def source_fingerprint(source) -> bytes:
    """sha256 of a BlockDevice's first and last 64 KiB: tells one source from another cheaply."""
    n = min(65536, source.size)
    h = _sha256(str(source.size).encode())
    if n:
        h.update(source.pread(n, 0))
        h.update(source.pread(n, source.size - n))
    return h.digest()


def _fsync_dir(path: str) -> None:
    try:
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
