"""The block-device interface every disk backend implements.

Offsets and lengths are in bytes. A device is a flat array of `size` bytes; the
BIOS presents it in sectors of `sector_size` (int 13h), the NBD server exports it
as is, and the copy engine moves data between two of them.

The extent flags are NBD's base:allocation bits, so block status from a server,
SEEK_DATA/SEEK_HOLE on a file and an overlay's map all speak the same language:
EXTENT_HOLE means "not allocated" (contents undefined unless ZERO is also set),
EXTENT_ZERO means "reads as zeroes".
"""

from __future__ import annotations

import abc
from collections import namedtuple

from nbdboot.errors import (  # noqa: F401 (the interface's errors)
    DiskError,
    DiskIOError,
    DiskRangeError,
    DiskReadOnlyError,
    DiskUnsupportedError,
)

# NBD's base:allocation bits (nbd/protocol.py's STATE_HOLE, STATE_ZERO), so extents pass between a device and
# the wire unchanged; not imported from there, which would load the codec into every local-only command.
EXTENT_HOLE = 1
EXTENT_ZERO = 2


# flags: EXTENT_HOLE | EXTENT_ZERO. A namedtuple rather than a frozen dataclass: cheaper to
# import and to build, and block status builds one per run.
class Extent(namedtuple("Extent", "offset length flags", defaults=(0,))):
    __slots__ = ()

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def is_zero(self) -> bool:
        return bool(self.flags & EXTENT_ZERO)


class BlockDevice(abc.ABC):
    """A random-access disk.

    Subclasses set `size` and the capability flags in __init__. Operations a
    device does not support raise DiskUnsupportedError, and callers check the
    `can_*` flags first (an NBD client must never send a command the server did
    not advertise). All methods may be called from one thread at a time, except
    flush() where `flush_is_thread_safe` says so.
    """

    size: int = 0
    read_only: bool = False
    can_flush: bool = False
    can_fua: bool = False
    can_trim: bool = False
    can_zero: bool = False
    can_fast_zero: bool = False
    can_extents: bool = False
    can_cache: bool = False
    can_multi_conn: bool = False
    # NBD block-size constraints (bytes); 1/4096/32 MiB when the backend has none.
    min_block: int = 1
    preferred_block: int = 4096
    max_block: int = 32 * 1024 * 1024
    description: str = ""
    # Made by this process as one hole: it reads as zeroes wherever nothing has written since.
    created_blank: bool = False
    # flush() may run in one thread while another reads or writes (fdatasync on a file may);
    # False where the device is one stream of requests (an NBD connection).
    flush_is_thread_safe: bool = False

    @property
    def sector_size(self) -> int:
        """Smallest unit the BIOS may address: 512 unless the device needs more."""
        return max(512, self.min_block)

    # -- data path -------------------------------------------------------------
    @abc.abstractmethod
    def pread_into(self, buf: memoryview | bytearray, offset: int) -> None:
        """Fill all of `buf` with the bytes at `offset`; a short read is an error."""

    def pread(self, length: int, offset: int) -> bytes:
        buf = bytearray(length)
        self.pread_into(buf, offset)
        return bytes(buf)

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int, fua: bool = False) -> None:
        raise DiskReadOnlyError("device is read-only")

    def flush(self) -> None:
        """Make every completed write durable; a no-op where nothing is cached."""

    def trim(self, offset: int, length: int) -> None:
        raise DiskUnsupportedError("trim not supported")

    def zero(self, offset: int, length: int, may_trim: bool = True, fast: bool = False) -> None:
        """Make the range read as zeroes; may punch holes unless may_trim is False.

        With fast=True, raise DiskUnsupportedError instead of falling back to a
        slow write of zeroes (NBD's FAST_ZERO).
        """
        raise DiskUnsupportedError("write zeroes not supported")

    def cache(self, offset: int, length: int) -> None:
        """Prefetch hint; ignored where it means nothing."""

    def start_writeback(self, offset: int, length: int) -> None:
        """Hint: begin writing the range out now, without waiting (not a flush)."""

    def uncache(self, offset: int, length: int) -> None:
        """Hint that a written range will not be read soon: wait for its writeback and
        drop it from any cache (still not a flush); ignored where it means nothing."""

    def extents(self, offset: int, length: int) -> list[Extent]:
        """Allocation of [offset, offset+length) as contiguous extents.

        The first extent starts at `offset`; the list may cover less than asked
        (callers query again from the end of the last one) but never more than
        the device. The default says "all data", which is always safe.
        """
        self.check_range(offset, length)
        return [Extent(offset, length, 0)]

    def reset(self) -> None:
        """Reopen what the device runs over (BIOS int 13h AH=00h); a no-op where nothing can be reopened."""

    @property
    def lost_connection(self) -> Exception | None:
        """The error that ended the device's connection for good (its reconnects spent, a server that broke
        the protocol), until reset() reopens it; None while it works, and for devices without one."""
        return None

    def close(self) -> None:
        pass

    # -- helpers ---------------------------------------------------------------
    def check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DiskRangeError(
                f"range {offset}+{length} is outside the device ({self.size} bytes)")

    def check_writable(self) -> None:
        if self.read_only:
            raise DiskReadOnlyError("device is read-only")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
