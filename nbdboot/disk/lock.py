"""Exclusive locks on the files a store writes: overlays, deploy/restore maps and targets.

API
    check_free(path, what)           FileInUse if another process holds PATH now
    lock_exclusive(fd, path, what)   raise FileInUse (exit 6) naming the holder's pid if another
                                     process has PATH locked; else hold the lock until fd is closed

Two locks per file, as each does one job: flock() excludes (it belongs to the open file
description, so closing another descriptor of the same file in this process does not drop it, the
trap of POSIX record locks), and a POSIX read lock on one byte far past any data lets a second user
learn the holder's pid from F_GETLK (flock cannot tell). qemu-img locks images the same way, with
OFD locks on bytes past the end.
"""

from __future__ import annotations

import fcntl
import os
import struct

from nbdboot.errors import LocalIOError

_PID_BYTE = 1 << 62   # beyond any data: a lock there never meets a real read or write
_FLOCK = struct.Struct("hh4xqqi4x")   # struct flock on Linux x86-64/arm64


class FileInUse(LocalIOError):
    pass


def holder_pid(fd: int) -> int | None:
    """The pid holding the pid byte of fd's file, if any (F_GETLK with a write lock asked)."""
    query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, _PID_BYTE, 1, 0)
    try:
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return None
    l_type, _whence, _start, _len, pid = _FLOCK.unpack(answer)
    return pid if l_type != fcntl.F_UNLCK and pid > 0 else None


def check_free(path: str, what: str) -> None:
    """FileInUse if someone holds PATH now (before a command connects anywhere on its behalf)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return   # the real open reports it
    try:
        lock_exclusive(fd, path, what)
    finally:
        os.close(fd)   # and with it both locks


def lock_exclusive(fd: int, path: str, what: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = holder_pid(fd)
        holder = f"process {pid}" if pid else "another process"
        raise FileInUse(f"{path} ({what}) is in use by {holder}; stop it first") from None
    except OSError:
        return   # a filesystem without locks (some network mounts): go on unlocked, as qemu does
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, _PID_BYTE, os.SEEK_SET)
    except OSError:
        pass     # only the pid in a second user's message depends on it
