"""Unix socket paths a server of ours binds: what may be removed first."""

from __future__ import annotations

import errno
import os
import socket
import stat


def remove_stale_socket(path: str) -> None:
    """A socket file left by a server that died may go; one a live server listens on, or anything that
    is not a socket (a user's file, /dev/null), may not: OSError with EADDRINUSE / EEXIST."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)   # nobody listens: left behind
        return
    except OSError:
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "a server is listening on it")
