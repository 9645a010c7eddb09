"""A local file (or block device) as a BlockDevice.

Sparse-aware: extents come from SEEK_DATA/SEEK_HOLE, trim and zero punch holes
with fallocate(2) where the filesystem supports it and fall back to writing
zeroes where it does not.
"""

from __future__ import annotations

import errno as _errno
import os
import stat

from nbdboot.disk.base import (
    EXTENT_HOLE,
    EXTENT_ZERO,
    BlockDevice,
    DiskIOError,
    DiskUnsupportedError,
    Extent,
)
from nbdboot.errors import LocalIOError

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_FALLOC_FL_ZERO_RANGE = 0x10

_SYNC_FILE_RANGE_WAIT_BEFORE = 0x1
_SYNC_FILE_RANGE_WRITE = 0x2
_SYNC_FILE_RANGE_WAIT_AFTER = 0x4

_libc = None


def _c():
    """The C library Python itself runs on: ctypes.util.find_library would run ldconfig."""
    global _libc
    if _libc is None:
        import ctypes   # only once a file needs a hole punched or written out
        lib = ctypes.CDLL(None, use_errno=True)
        lib.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        try:
            lib.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        except AttributeError:   # not Linux: writeback hints become no-ops
            pass
        _libc = lib
    return _libc


def _sync_file_range(fd: int, offset: int, length: int, flags: int) -> None:
    """sync_file_range(2) as a hint: errors are left for the next fdatasync to report."""
    fn = getattr(_c(), "sync_file_range", None)
    if fn is not None:
        fn(fd, offset, length, flags)


def _fallocate(fd: int, mode: int, offset: int, length: int) -> bool:
    """fallocate(2); False where the kernel or filesystem says it cannot."""
    lib = _c()
    if lib.fallocate(fd, mode, offset, length) == 0:
        return True
    import ctypes
    err = ctypes.get_errno()
    if err in (_errno.EOPNOTSUPP, _errno.ENOSYS, _errno.EINVAL):
        return False
    raise DiskIOError(f"fallocate: {os.strerror(err)}")


_ZERO_CHUNK = bytes(1 << 20)


def check_file_size_fits(path: str, size: int) -> None:
    """Refuse, before anything is created or truncated, a file of `size` bytes at PATH that its
    filesystem cannot hold (ext4 stops at 16 TiB, tmpfs and xfs at 8 EiB): a sparse probe file beside
    it is sized as the real one would be, then removed. Block devices and existing files of that size
    need no probe."""
    if size > (1 << 63) - 1:
        raise LocalIOError(f"{path}: a {size}-byte file is larger than any file can be (2^63-1 bytes)")
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size == size:
            return
    except OSError:
        pass
    directory = os.path.dirname(os.path.abspath(path))
    probe = os.path.join(directory, f".nbdboot-probe-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        return   # cannot probe (directory not writable...): the real create reports it
    try:
        os.ftruncate(fd, size)
    except OSError as e:
        if e.errno in (_errno.EFBIG, _errno.EINVAL):
            raise LocalIOError(f"{path}: a {size}-byte file is larger than the filesystem of "
                               f"{directory} allows") from None
    finally:
        os.close(fd)
        os.unlink(probe)


class FileDevice(BlockDevice):
    flush_is_thread_safe = True   # fdatasync(2) may run beside other I/O on the fd

    def __init__(self, path: str | os.PathLike, read_only: bool = False, create_size: int | None = None,
                 lock: str | None = None):
        """lock: take an exclusive lock (disk/lock.py) naming the file's role ("deploy target"), before
        the file is sized or written."""
        self.path = os.fspath(path)
        flags = os.O_RDONLY if read_only else os.O_RDWR
        created = False
        if create_size is not None:
            flags |= os.O_CREAT
            created = not os.path.lexists(self.path)
        try:
            self.fd = os.open(self.path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            raise LocalIOError(f"cannot open {self.path}: {e.strerror}") from None
        try:
            if lock:
                from nbdboot.disk.lock import lock_exclusive
                lock_exclusive(self.fd, self.path, lock)
            st = os.fstat(self.fd)
            if stat.S_ISDIR(st.st_mode):
                raise LocalIOError(f"{self.path} is a directory, not a disk image")
            self.is_block_device = stat.S_ISBLK(st.st_mode)
            if create_size is not None and not self.is_block_device and st.st_size != create_size:
                try:
                    os.ftruncate(self.fd, create_size)
                except OSError as e:
                    raise LocalIOError(f"cannot make {self.path} {create_size} bytes long: {e.strerror}"
                                       + (" (larger than this filesystem allows)" if e.errno == _errno.EFBIG
                                          else "")) from None
                # Grown from nothing, a file is one hole: it reads as zeroes without writing any.
                self.created_blank = st.st_size == 0
        except BaseException:
            os.close(self.fd)
            if created:
                try:
                    os.unlink(self.path)   # a failed create leaves nothing behind to block the next try
                except OSError:
                    pass
            raise
        self.size = os.lseek(self.fd, 0, os.SEEK_END)
        self.read_only = read_only
        self.can_flush = not read_only
        self.can_fua = not read_only
        self.can_trim = not read_only and not self.is_block_device
        self.can_zero = not read_only
        self.can_fast_zero = False
        self.can_extents = not self.is_block_device
        self.can_cache = True
        self.can_multi_conn = True
        self.min_block = 1
        self.preferred_block = 4096
        self.max_block = 32 * 1024 * 1024
        self.description = self.path

    def pread_into(self, buf, offset: int) -> None:
        view = memoryview(buf).cast("B")
        self.check_range(offset, len(view))
        done = 0
        while done < len(view):
            n = os.preadv(self.fd, [view[done:]], offset + done)
            if n <= 0:
                raise DiskIOError(f"short read at {offset + done} in {self.path}")
            done += n

    def pwrite(self, data, offset: int, fua: bool = False) -> None:
        self.check_writable()
        view = memoryview(data).cast("B")
        self.check_range(offset, len(view))
        done = 0
        while done < len(view):
            n = os.pwrite(self.fd, view[done:], offset + done)
            if n <= 0:
                raise DiskIOError(f"short write at {offset + done} in {self.path}")
            done += n
        if fua:
            os.fdatasync(self.fd)

    def flush(self) -> None:
        if not self.read_only:
            os.fdatasync(self.fd)

    def trim(self, offset: int, length: int) -> None:
        self.check_writable()
        self.check_range(offset, length)
        if length and not self.is_block_device:
            # Trim is advisory: a filesystem that cannot punch holes simply keeps the data.
            _fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length)

    def zero(self, offset: int, length: int, may_trim: bool = True, fast: bool = False) -> None:
        self.check_writable()
        self.check_range(offset, length)
        if not length:
            return
        if not self.is_block_device:
            if may_trim and _fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length):
                return
            if _fallocate(self.fd, _FALLOC_FL_ZERO_RANGE | _FALLOC_FL_KEEP_SIZE, offset, length):
                return
        if fast:
            raise DiskUnsupportedError("no fast way to zero this range")
        end = offset + length
        while offset < end:
            n = min(len(_ZERO_CHUNK), end - offset)
            self.pwrite(memoryview(_ZERO_CHUNK)[:n], offset)
            offset += n

    def cache(self, offset: int, length: int) -> None:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, offset, length, os.POSIX_FADV_WILLNEED)

    def start_writeback(self, offset: int, length: int) -> None:
        if not self.read_only:
            _sync_file_range(self.fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    def uncache(self, offset: int, length: int) -> None:
        # A copy that leaves a GiB in the page cache makes every later write find fresh
        # pages (slow in a VM whose freed memory goes back to the host); waiting for a
        # written range and dropping it recycles the same few pages, as nbdcopy does.
        # A block device's page cache is the same kind of page cache.
        if not self.read_only:
            _sync_file_range(self.fd, offset, length, _SYNC_FILE_RANGE_WAIT_BEFORE
                             | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, offset, length, os.POSIX_FADV_DONTNEED)

    def extents(self, offset: int, length: int) -> list[Extent]:
        self.check_range(offset, length)
        end = offset + length
        if not self.can_extents or length == 0:
            return [Extent(offset, length, 0)] if length else []
        out: list[Extent] = []
        pos = offset
        while pos < end:
            try:
                data = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == _errno.ENXIO:   # no data after pos: the rest is a hole
                    data = self.size
                else:
                    return out or [Extent(offset, length, 0)]
            if data > pos:
                hole_end = min(data, end)
                out.append(Extent(pos, hole_end - pos, EXTENT_HOLE | EXTENT_ZERO))
                pos = hole_end
                continue
            try:
                hole = os.lseek(self.fd, pos, os.SEEK_HOLE)
            except OSError:
                hole = self.size
            data_end = min(max(hole, pos + 1), end)
            out.append(Extent(pos, data_end - pos, 0))
            pos = data_end
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
