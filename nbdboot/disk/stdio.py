"""`-` in `nbdboot copy`, as nbdcopy has it: standard output as a destination, standard input as a source.

Standard output takes the copy in order: the copier delivers blocks in the order its reads complete, so
blocks that arrive ahead of the write position wait in a reorder buffer (bounded by the requests in flight)
and zero runs are written as zero bytes. Standard input is read to its end: a regular file or a block device
redirected to it is copied like any local file; a pipe is streamed (its size is known only at EOF), each
all-zero block written to the destination as zeroes rather than data.
"""

from __future__ import annotations

import os
import stat
import time

from nbdboot.disk.copy import is_nbd_spec, is_null_spec
from nbdboot.errors import LocalIOError, UsageError

_ZEROS = bytes(1 << 20)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise LocalIOError(f"cannot write to standard output: {e.strerror}") from None
        view = view[n:]


class StdoutDevice:
    """A copy destination writing bytes 0..size-1 to a file descriptor, in order."""

    read_only = False
    can_zero = True
    can_extents = False

    def __init__(self, size: int, fd: int = 1):
        self.size = size          # the source's: what must have been written by close()
        self.fd = fd
        self.pos = 0
        self._ahead: dict[int, bytes | int] = {}   # offset -> data, or a zero run's length

    def pwrite(self, data, offset: int, fua: bool = False) -> None:
        self._put(offset, bytes(data) if offset != self.pos else data)

    def zero(self, offset: int, length: int, may_trim: bool = True, fast: bool = False) -> None:
        self._put(offset, length)

    def _put(self, offset: int, piece) -> None:
        if offset < self.pos or offset in self._ahead:
            raise LocalIOError(f"standard output: offset {offset} written twice")
        if offset != self.pos:
            self._ahead[offset] = piece
            return
        self._emit(piece)
        while self.pos in self._ahead:
            self._emit(self._ahead.pop(self.pos))

    def _emit(self, piece) -> None:
        if isinstance(piece, int):
            left = piece
            while left:
                n = min(left, len(_ZEROS))
                _write_all(self.fd, memoryview(_ZEROS)[:n])
                left -= n
            self.pos += piece
        else:
            _write_all(self.fd, piece)
            self.pos += len(piece)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.pos != self.size or self._ahead:
            raise LocalIOError(f"standard output: {self.pos} of {self.size} bytes written in order")


def stdin_is_seekable(fd: int = 0) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        raise LocalIOError(f"cannot read standard input: {e.strerror}") from None
    return stat.S_ISREG(mode) or stat.S_ISBLK(mode)


class StreamResult:
    __slots__ = ("size", "data_bytes", "zero_bytes", "seconds")

    def __init__(self, size: int, data_bytes: int, zero_bytes: int, seconds: float):
        self.size, self.data_bytes, self.zero_bytes, self.seconds = size, data_bytes, zero_bytes, seconds


def _read_block(fd: int, buf: bytearray) -> int:
    """Fill `buf` from `fd`; fewer bytes only at EOF."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        try:
            n = os.readv(fd, [view[got:]])
        except OSError as e:
            raise LocalIOError(f"cannot read standard input: {e.strerror}") from None
        if n == 0:
            break
        got += n
    return got


def copy_stream(dst_spec: str, *, request_size: int = 2 << 20, sparse: int = 65536, flush: bool = False,
                progress=None, fd: int = 0, client_options=None) -> StreamResult:
    """Copy everything readable from `fd` (a pipe) to `dst_spec`: an NBD export (at least as large), a file
    (created or replaced, holes for zero blocks), null: or `-`."""
    t0 = time.monotonic()
    data_bytes = zero_bytes = pos = 0
    client = out = None
    out_fd = None
    if dst_spec == "-":
        out_fd = 1
    elif is_nbd_spec(dst_spec):
        from nbdboot.nbd.client import NbdClient
        client = NbdClient(dst_spec, **(client_options or {}))
        if client.read_only:
            client.close()
            raise UsageError(f"destination {dst_spec} is read-only")
        request_size = min(request_size, client.max_payload)
    elif not is_null_spec(dst_spec):
        try:
            out = open(dst_spec, "wb")
        except OSError as e:
            raise LocalIOError(f"cannot open {dst_spec}: {e.strerror}") from None
    buf = bytearray(request_size)
    zeros = bytes(request_size)
    try:
        while True:
            n = _read_block(fd, buf)
            if not n:
                break
            block = memoryview(buf)[:n]
            zero = bool(sparse) and zeros.startswith(block)   # memcmp, no copy
            if client is not None:
                if pos + n > client.size:
                    raise UsageError(f"destination is smaller ({client.size} bytes) than standard input")
                if zero and client.can_zero:
                    client.zero(pos, n)
                else:
                    client.pwrite(block, pos)
            elif out is not None:
                if zero:
                    out.seek(n, os.SEEK_CUR)
                else:
                    out.write(block)
            elif out_fd is not None:
                _write_all(out_fd, block)
            pos += n
            if zero:
                zero_bytes += n
            else:
                data_bytes += n
            if progress is not None:
                progress(pos, 0)
        if out is not None:
            out.truncate(pos)   # a trailing hole is a length, not a write
            if flush:
                out.flush()
                os.fsync(out.fileno())
        if client is not None and flush and client.can_flush:
            client.flush()
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            raise
        raise LocalIOError(f"cannot write {dst_spec}: {e.strerror}") from None
    finally:
        if client is not None:
            client.close()
        if out is not None:
            out.close()
    return StreamResult(pos, data_bytes, zero_bytes, time.monotonic() - t0)
