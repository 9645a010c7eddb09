"""An NBD export as a BlockDevice.

API
    dev = NbdDevice(uri, *, read_only=False, request_size=4 MiB, in_flight=16,
                    **client_options)    # options as NbdClient: timeout, retries, ...
    dev = NbdDevice(client=NbdClient(...))         # wrap a client you built
    dev.size, dev.read_only, dev.can_* (from the transmission flags),
    dev.min_block / preferred_block / max_block (the server's block sizes)
    dev.pread_into(buf, offset)   dev.pwrite(data, offset, fua=False)
    dev.flush()  dev.trim(off, len)  dev.zero(off, len, may_trim=True, fast=False)
    dev.cache(off, len)  dev.extents(off, len) -> [Extent]   (base:allocation)
    dev.reset()                    close and reconnect (BIOS int 13h AH=00h)
    dev.lost_connection            the NbdError that ended the connection for good, or None
    dev.client                     the NbdClient underneath
    dev.close()

Callers may use any offset and length inside the device: requests larger than
the server's maximum payload are split (and pipelined), and ranges not aligned
to its minimum block are widened with read-modify-write, so the server only
ever sees requests it promised to accept.
"""

from __future__ import annotations

from nbdboot.disk.base import (
    EXTENT_HOLE,
    EXTENT_ZERO,
    BlockDevice,
    DiskReadOnlyError,
    DiskUnsupportedError,
    Extent,
)
from nbdboot.nbd import protocol as P
from nbdboot.nbd.client import NbdClient
from nbdboot.nbd.uri import NbdUri

_ZERO_CHUNK = bytes(1 << 20)
_MAX_EFFECT = 0xFFFFFFFF  # 32-bit length field of TRIM / WRITE_ZEROES / BLOCK_STATUS


class NbdDevice(BlockDevice):
    def __init__(self, uri: str | NbdUri | None = None, *, client: NbdClient | None = None,
                 read_only: bool = False, request_size: int = 4 << 20, in_flight: int = 16,
                 **client_options):
        if client is None:
            if uri is None:
                raise ValueError("NbdDevice needs a URI or a client")
            client = NbdClient(uri, **client_options)
        self.client = client
        self.force_read_only = read_only
        self.in_flight = max(1, in_flight)
        self._request_size = request_size
        self._load_shape()
        self.description = str(client.uri)

    def _load_shape(self) -> None:
        c = self.client
        self.size = c.size
        self.read_only = c.read_only or self.force_read_only
        writable = not self.read_only
        self.can_flush = c.can_flush and writable
        self.can_fua = c.can_fua and writable
        self.can_trim = c.can_trim and writable
        self.can_zero = c.can_zero and writable
        self.can_fast_zero = c.can_fast_zero and writable
        self.can_extents = c.context_id(P.CONTEXT_BASE_ALLOCATION) is not None
        self.can_cache = c.can_cache
        self.can_multi_conn = c.can_multi_conn
        bs = c.block_sizes
        self.min_block = bs.minimum
        self.preferred_block = bs.preferred
        self.max_block = c.max_payload
        chunk = max(self.preferred_block, min(self._request_size, self.max_block))
        self.chunk = chunk - chunk % self.min_block

    # -- alignment helpers -------------------------------------------------------------------
    def _aligned(self, offset: int, length: int) -> bool:
        mn = self.min_block
        return mn == 1 or (offset % mn == 0 and length % mn == 0)

    def _widen(self, offset: int, length: int) -> tuple[int, int]:
        mn = self.min_block
        start = offset - offset % mn
        end = -(-(offset + length) // mn) * mn
        return start, min(end, self.size) - start

    # -- data path ------------------------------------------------------------------------------
    def pread_into(self, buf, offset: int) -> None:
        view = memoryview(buf).cast("B")
        self.check_range(offset, len(view))
        if not len(view):
            return
        if self._aligned(offset, len(view)):
            self._read_split(view, offset)
            return
        start, n = self._widen(offset, len(view))
        tmp = bytearray(n)
        self._read_split(memoryview(tmp), start)
        view[:] = memoryview(tmp)[offset - start:offset - start + len(view)]

    def _read_split(self, view: memoryview, offset: int) -> None:
        c = self.client
        if len(view) <= self.chunk:
            c.pread_into(view, offset)
            return
        pending = []
        pos = 0
        while pos < len(view) or pending:
            while pos < len(view) and len(pending) < self.in_flight:
                n = min(self.chunk, len(view) - pos)
                pending.append(c.aio_pread(view[pos:pos + n], offset + pos))
                pos += n
            c.wait(pending.pop(0))

    def pwrite(self, data, offset: int, fua: bool = False) -> None:
        if self.read_only:
            raise DiskReadOnlyError("device is read-only")
        view = memoryview(data).cast("B")
        self.check_range(offset, len(view))
        if not len(view):
            return
        if self._aligned(offset, len(view)):
            self._write_split(view, offset, fua)
            return
        # Read-modify-write the partial blocks at either end; the middle goes as is.
        start, n = self._widen(offset, len(view))
        tmp = bytearray(n)
        mn = self.min_block
        head = memoryview(tmp)[:mn]
        self.client.pread_into(head, start)
        if n > mn:
            tail_at = start + n - mn
            self.client.pread_into(memoryview(tmp)[n - mn:], tail_at)
        tmp[offset - start:offset - start + len(view)] = view
        self._write_split(memoryview(tmp), start, fua)

    def _write_split(self, view: memoryview, offset: int, fua: bool) -> None:
        c = self.client
        pending = []
        pos = 0
        while pos < len(view) or pending:
            while pos < len(view) and len(pending) < self.in_flight:
                n = min(self.chunk, len(view) - pos)
                pending.append(c.aio_pwrite(view[pos:pos + n], offset + pos, fua=fua and self.can_fua))
                pos += n
            c.wait(pending.pop(0))

    def flush(self) -> None:
        if self.can_flush:
            self.client.flush()

    def _effect_ranges(self, offset: int, length: int):
        """Split a payload-less request at the 32-bit limit, keeping alignment."""
        step = _MAX_EFFECT - _MAX_EFFECT % max(self.min_block, 4096)
        end = offset + length
        while offset < end:
            n = min(step, end - offset)
            yield offset, n
            offset += n

    def trim(self, offset: int, length: int) -> None:
        self.check_writable()
        self.check_range(offset, length)
        if not self.can_trim:
            raise DiskUnsupportedError("server does not support TRIM")
        mn = self.min_block
        start = -(-offset // mn) * mn          # trim is advisory: only whole blocks inside
        end = (offset + length) // mn * mn
        for off, n in self._effect_ranges(start, max(0, end - start)):
            self.client.trim(off, n)

    def zero(self, offset: int, length: int, may_trim: bool = True, fast: bool = False) -> None:
        self.check_writable()
        self.check_range(offset, length)
        if not length:
            return
        if not self.can_zero:
            if fast:
                raise DiskUnsupportedError("server cannot zero fast")
            self._write_zeroes(offset, length)
            return
        mn = self.min_block
        start = -(-offset // mn) * mn
        end = (offset + length) // mn * mn
        if start >= end:
            self._write_zeroes(offset, length)
            return
        if start > offset:
            self._write_zeroes(offset, start - offset)
        for off, n in self._effect_ranges(start, end - start):
            self.client.zero(off, n, no_hole=not may_trim, fast=fast and self.can_fast_zero)
        if end < offset + length:
            self._write_zeroes(end, offset + length - end)

    def _write_zeroes(self, offset: int, length: int) -> None:
        while length:
            n = min(length, len(_ZERO_CHUNK))
            self.pwrite(memoryview(_ZERO_CHUNK)[:n], offset)
            offset += n
            length -= n

    def cache(self, offset: int, length: int) -> None:
        if not self.can_cache or not length:
            return
        start, n = self._widen(offset, length)
        for off, k in self._effect_ranges(start, n):
            self.client.cache(off, k)

    def extents(self, offset: int, length: int) -> list[Extent]:
        self.check_range(offset, length)
        if not length:
            return []
        if not self.can_extents:
            return [Extent(offset, length, 0)]
        start, n = self._widen(offset, length)
        n = min(n, _MAX_EFFECT - _MAX_EFFECT % max(self.min_block, 4096))
        got = self.client.block_status(start, n).get(P.CONTEXT_BASE_ALLOCATION, [])
        out: list[Extent] = []
        pos, end = start, offset + length
        for ext_len, flags in got:
            lo, hi = max(pos, offset), min(pos + ext_len, end)
            if hi > lo:
                f = flags & (EXTENT_HOLE | EXTENT_ZERO)
                if out and out[-1].flags == f and out[-1].end == lo:
                    out[-1] = Extent(out[-1].offset, hi - out[-1].offset, f)
                else:
                    out.append(Extent(lo, hi - lo, f))
            pos += ext_len
            if pos >= end:
                break
        return out or [Extent(offset, length, 0)]

    # -- connection --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Drop the connection and negotiate a fresh one (int 13h AH=00h)."""
        self.client.reconnect()
        self._load_shape()

    @property
    def lost_connection(self):
        return self.client.lost

    def close(self) -> None:
        self.client.close()
