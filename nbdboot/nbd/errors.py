"""NBD failures, split by who is to blame.

NbdError and its subclasses end a connection (or never start one): network
trouble, a server that breaks the protocol, a refused negotiation. They carry
exit code 3. NbdCommandError is one request the server answered with an error;
the connection lives on, so it is a DiskError carrying the NBD errno.
"""

from __future__ import annotations

from nbdboot.errors import (  # noqa: F401 (the error values NBD carries, named here for its users)
    EINVAL,
    EIO,
    ENOMEM,
    ENOSPC,
    ENOTCONN,
    ENOTSUP,
    EOVERFLOW,
    EPERM,
    ERRNO_NAMES,
    ESHUTDOWN,
    EXIT_NBD,
    DiskError,
    NbdbootError,
)


class NbdError(NbdbootError):
    """The connection failed or cannot be trusted any more."""

    exit_code = EXIT_NBD


class NbdConnectionError(NbdError):
    """Cannot reach the server, or it went away."""


class NbdTimeoutError(NbdConnectionError):
    """No answer within the connect or per-command timeout."""


class NbdProtocolError(NbdError):
    """The server sent something the protocol forbids (or we did not negotiate)."""


class NbdNegotiationError(NbdError):
    """The server refused an option we cannot do without (unknown export, TLS required...)."""

    def __init__(self, message: str, reply_type: int = 0):
        super().__init__(message)
        self.reply_type = reply_type


class NbdTLSError(NbdError):
    """STARTTLS refused or the TLS handshake failed."""


class NbdChangedError(NbdError):
    """After a reconnect the export is not the one we had (size, flags, block sizes)."""


class NbdCommandError(DiskError):
    """The server failed one request; `errno` is the NBD error value."""

    exit_code = EXIT_NBD

    def __init__(self, message: str, errno: int = EIO):
        super().__init__(message, errno)


def known_errno(value: int) -> int:
    """Unknown error values mean EINVAL (proto.md; qemu does the same)."""
    return value if value in ERRNO_NAMES and value != ENOTCONN else EINVAL
