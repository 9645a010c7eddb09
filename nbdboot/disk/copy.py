"""Copy one disk to another, NBD or local, sparse-aware and pipelined.

    copy(src_spec, dst_spec, request_size=2 MiB, requests=16, progress=callback)

A spec is an NBD URI (or host:port), a local file, or "null:" / /dev/null to
discard. The source's allocation map (NBD base:allocation or SEEK_DATA/HOLE)
turns zero runs into WRITE_ZEROES / punched holes without reading them; data
blocks that read as zero are written the same way. Reads from an NBD source
keep `requests` in flight into a fixed pool of buffers, and each buffer goes
to the destination as it arrives (NBD writes are pipelined too), so the
result is byte-identical to what nbdcopy produces without holding more than
requests x request_size bytes.
"""

from __future__ import annotations

import os
import stat
import time

from nbdboot.disk.base import EXTENT_ZERO
from nbdboot.disk.file import FileDevice, check_file_size_fits
from nbdboot.errors import LocalIOError, UsageError
from nbdboot.nbd import protocol as P
from nbdboot.nbd.client import NbdClient
from nbdboot.nbd.uri import looks_like_uri, parse_uri

_ZEROS = bytes(32 << 20)
PLAN_WINDOW = 1 << 30       # block status asked per window


def is_nbd_spec(spec: str) -> bool:
    """An NBD URI, or host:port naming no local path."""
    if looks_like_uri(spec):
        return True
    if os.path.exists(spec) or "/" in spec:
        return False
    try:
        u = parse_uri(spec)
    except UsageError:
        return False
    return ":" in spec and not u.is_unix


def is_null_spec(spec: str) -> bool:
    """null: or /dev/null: a destination that discards."""
    return spec == "null:" or os.path.realpath(spec) == "/dev/null"


class CopyResult:
    __slots__ = ("size", "data_bytes", "zero_bytes", "seconds")

    def __init__(self, size: int, data_bytes: int, zero_bytes: int, seconds: float):
        self.size = size
        self.data_bytes = data_bytes
        self.zero_bytes = zero_bytes
        self.seconds = seconds

    def __repr__(self) -> str:
        return (f"CopyResult(size={self.size}, data_bytes={self.data_bytes}, zero_bytes={self.zero_bytes}, "
                f"seconds={self.seconds:.3f})")


class NbdEnd:
    def __init__(self, client: NbdClient):
        self.c = client
        self.size = client.size
        self.fresh = False

    def extents(self, offset: int, length: int):
        cid = self.c.context_id(P.CONTEXT_BASE_ALLOCATION)
        if cid is None or not self.c.can_block_status:
            return [(offset, length, False)]
        out, pos, end = [], offset, offset + length
        got = self.c.block_status(offset, min(length, 0xFFFFFFFF - 0xFFFFFFFF % 4096))
        for n, flags in got.get(P.CONTEXT_BASE_ALLOCATION, []):
            n = min(n, end - pos)
            out.append((pos, n, bool(flags & P.STATE_ZERO)))
            pos += n
            if pos >= end:
                break
        return out or [(offset, length, False)]


class LocalEnd:
    def __init__(self, dev):
        self.dev = dev
        self.size = dev.size
        self.fresh = False

    def extents(self, offset: int, length: int):
        if not getattr(self.dev, "can_extents", False):
            return [(offset, length, False)]
        return [(e.offset, e.length, bool(e.flags & EXTENT_ZERO)) for e in self.dev.extents(offset, length)]


class NullDevice:
    """Discards everything (nbdcopy's null:)."""
    size = 1 << 63
    fresh = True
    read_only = False
    can_zero = True

    def pwrite(self, data, offset, fua=False):
        pass

    def zero(self, offset, length, may_trim=True, fast=False):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def refuse_same_disk(src_spec: str, dst_spec: str) -> None:
    """Copying a disk onto itself would first empty it (the destination starts as one hole)."""
    if is_null_spec(dst_spec):
        return
    if is_nbd_spec(src_spec) and is_nbd_spec(dst_spec):
        a, b = parse_uri(src_spec), parse_uri(dst_spec)
        same = (a.host, a.port, a.socket, a.export) == (b.host, b.port, b.socket, b.export)
    elif not is_nbd_spec(src_spec) and not is_nbd_spec(dst_spec):
        try:
            same = os.path.samefile(src_spec, dst_spec)   # same inode: hard links and symlinks too
        except OSError:
            same = False
    else:
        same = False
    if same:
        raise UsageError(f"destination {dst_spec} is the source {src_spec}: nothing to copy, and the copy "
                         "would empty it first")


def open_source(spec: str, **client_options):
    if is_nbd_spec(spec):
        return NbdEnd(NbdClient(spec, **client_options))
    if is_null_spec(spec):
        raise UsageError("null: cannot be a copy source")
    return LocalEnd(FileDevice(spec, read_only=True))


def open_destination(spec: str, size: int, **client_options):
    if is_null_spec(spec):
        return LocalEnd(NullDevice())
    if is_nbd_spec(spec):
        end = NbdEnd(NbdClient(spec, **client_options))
        if end.c.read_only:
            end.c.close()
            raise UsageError(f"destination {spec} is read-only")
        if end.size < size:
            end.c.close()
            raise UsageError(f"destination is smaller ({end.size} bytes) than the source ({size} bytes)")
        return end
    try:
        st = os.stat(spec)
        regular = stat.S_ISREG(st.st_mode)
        existed = True
    except FileNotFoundError:
        regular, existed = True, False
    except OSError as e:
        raise LocalIOError(f"cannot stat {spec}: {e.strerror}") from None
    if regular:
        check_file_size_fits(spec, size)   # before the truncate below: a copy that cannot fit loses nothing
        if existed:  # start from an empty file so unwritten zero runs are holes
            try:
                os.truncate(spec, 0)
            except OSError as e:
                raise LocalIOError(f"cannot truncate {spec}: {e.strerror}") from None
        dev = FileDevice(spec, create_size=size)
        end = LocalEnd(dev)
        end.fresh = True
        return end
    dev = FileDevice(spec)
    if dev.size < size:
        dev.close()
        raise UsageError(f"destination is smaller ({dev.size} bytes) than the source ({size} bytes)")
    return LocalEnd(dev)


class Copier:
    def __init__(self, src, dst, *, request_size: int = 2 << 20, requests: int = 16,
                 sparse: int = 65536, extents: bool = True, flush: bool = False, progress=None):
        self.src, self.dst = src, dst
        rs = request_size
        if isinstance(src, NbdEnd):
            rs = min(max(rs, src.c.block_sizes.preferred), src.c.max_payload)
        if isinstance(dst, NbdEnd):
            rs = min(max(rs, dst.c.block_sizes.preferred), dst.c.max_payload)
        self.request_size = rs
        self.requests = max(1, requests)
        self.sparse = sparse
        self.use_extents = extents
        self.want_flush = flush
        self.progress = progress
        self.done_bytes = 0
        self.data_bytes = 0
        self.zero_bytes = 0
        self._pool = [memoryview(bytearray(rs)) for _ in range(self.requests)]
        self._free = list(self._pool)
        self._reads: dict[int, memoryview] = {}     # src cookie -> pool buffer
        self._writes: dict[int, memoryview] = {}    # dst cookie -> pool buffer
        self._users: dict[int, int] = {}            # id(pool buffer) -> writes still using it

    # -- plan -------------------------------------------------------------------------------
    def _plan(self):
        size = self.src.size
        pos = 0
        while pos < size:
            window = min(PLAN_WINDOW, size - pos)
            exts = self.src.extents(pos, window) if self.use_extents else [(pos, window, False)]
            for off, n, zero in exts:
                yield off, n, zero
                pos = off + n
            if not exts:
                yield pos, window, False
                pos += window

    # -- destination --------------------------------------------------------------------------
    def _zero(self, offset: int, length: int) -> None:
        self.zero_bytes += length
        self.done_bytes += length
        if self.dst.fresh:
            return
        if isinstance(self.dst, NbdEnd):
            c = self.dst.c
            if c.can_zero:
                pos, end = offset, offset + length
                step = 1 << 30
                while pos < end:
                    n = min(step, end - pos)
                    self._dst_wait_slots()
                    cmd = c.aio_zero(pos, n)
                    self._writes[cmd.cookie] = None
                    pos += n
                return
            self._write_zero_buffers(offset, length)
            return
        dev = self.dst.dev
        if dev.can_zero:
            dev.zero(offset, length)
        else:
            self._write_zero_buffers(offset, length)

    def _write_zero_buffers(self, offset, length):
        pos = offset
        while pos < offset + length:
            n = min(len(_ZEROS), offset + length - pos)
            if isinstance(self.dst, NbdEnd):
                self.dst.c.pwrite(memoryview(_ZEROS)[:n], pos)
            else:
                self.dst.dev.pwrite(memoryview(_ZEROS)[:n], pos)
            pos += n

    def _dst_wait_slots(self) -> None:
        c = self.dst.c
        while c.in_flight >= self.requests:
            self._retire_write(c.next_completed())

    def _retire_write(self, cmd) -> None:
        buf = self._writes.pop(cmd.cookie, None)
        cmd.check()
        if buf is not None:
            self._release(buf)

    def _release(self, buf: memoryview) -> None:
        """One user of a pool buffer is done; the last one gives it back."""
        key = id(buf)
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key]
            self._free.append(buf)

    def _runs(self, view: memoryview):
        """Split a block into (start, end, is_zero) runs at `sparse`-byte granularity."""
        n, g = len(view), self.sparse
        if not g:
            return [(0, n, False)]
        runs: list[list] = []
        for pos in range(0, n, g):
            end = min(pos + g, n)
            zero = _ZEROS.startswith(view[pos:end])  # memcmp, no copy
            if runs and runs[-1][2] == zero:
                runs[-1][1] = end
            else:
                runs.append([pos, end, zero])
        return runs

    def _deliver(self, view: memoryview, offset: int, buf: memoryview) -> None:
        """A block of source data is in `view` (part of pool buffer `buf`)."""
        key = id(buf)
        self._users[key] = 1  # held until every write below is done
        nbd_dst = isinstance(self.dst, NbdEnd)
        for start, end, zero in self._runs(view):
            if zero:
                self._zero(offset + start, end - start)
                continue
            part = view[start:end]
            self.data_bytes += len(part)
            self.done_bytes += len(part)
            if nbd_dst:
                cmd = self.dst.c.aio_pwrite(part, offset + start)
                self._users[key] += 1
                self._writes[cmd.cookie] = buf
            else:
                self.dst.dev.pwrite(part, offset + start)
        self._release(buf)

    # -- source ---------------------------------------------------------------------------------
    def _buffer(self) -> memoryview:
        while not self._free:
            src_c = self.src.c if isinstance(self.src, NbdEnd) else None
            if src_c is not None and src_c.in_flight:
                self._retire_read(src_c.next_completed())
            else:
                self._retire_write(self.dst.c.next_completed())
        return self._free.pop()

    def _retire_read(self, cmd) -> None:
        buf = self._reads.pop(cmd.cookie)
        cmd.check()
        self._deliver(cmd.buf, cmd.offset, buf)
        self._tick()

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress(self.done_bytes, self.src.size)

    def run(self) -> CopyResult:
        t0 = time.monotonic()
        rs = self.request_size
        nbd_src = isinstance(self.src, NbdEnd)
        for off, n, zero in self._plan():
            if zero and self.sparse:
                self._zero(off, n)
                self._tick()
                continue
            pos, end = off, off + n
            while pos < end:
                k = min(rs, end - pos)
                buf = self._buffer()
                view = buf[:k]
                if nbd_src:
                    cmd = self.src.c.aio_pread(view, pos)
                    self._reads[cmd.cookie] = buf
                else:
                    self.src.dev.pread_into(view, pos)
                    self._deliver(view, pos, buf)
                    self._tick()
                pos += k
        if nbd_src:
            while self.src.c.in_flight:
                self._retire_read(self.src.c.next_completed())
        if isinstance(self.dst, NbdEnd):
            while self.dst.c.in_flight:
                self._retire_write(self.dst.c.next_completed())
            if self.want_flush and self.dst.c.can_flush:
                self.dst.c.flush()
        elif self.want_flush:
            self.dst.dev.flush()
        return CopyResult(self.src.size, self.data_bytes, self.zero_bytes, time.monotonic() - t0)


def close_end(end) -> None:
    if isinstance(end, NbdEnd):
        end.c.close()
    else:
        end.dev.close()


def copy(src_spec: str, dst_spec: str, *, progress=None, client_options=None, **kw) -> CopyResult:
    opts = dict(client_options or {})
    refuse_same_disk(src_spec, dst_spec)
    src = open_source(src_spec, **opts)
    try:
        dst = open_destination(dst_spec, src.size, **opts)
        try:
            return Copier(src, dst, progress=progress, **kw).run()
        finally:
            close_end(dst)
    finally:
        close_end(src)
