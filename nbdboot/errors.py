"""Exit codes and the error types that map to them.

Every failure a user can cause or meet ends in one clear line on stderr and one
of these exit codes; CI scripts depend on them, so they never change meaning.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_EXPECT_FAILED = 1      # --expect text not seen before --timeout
EXIT_USAGE = 2              # bad command line or bad input file
EXIT_NBD = 3                # NBD connection, negotiation or protocol failure
EXIT_GUEST_CRASH = 4        # triple fault, invalid opcode, unmapped fetch, dead hlt
EXIT_BOOT_FAILED = 5        # no bootable disk, int 18h from the guest
EXIT_IO = 6                 # local file or device error (image, overlay, target)
EXIT_BREAKPOINT = 7         # the CPU reached a --break address
EXIT_GUEST_RESET = 8        # the guest reset the machine and --no-reboot was given
EXIT_INTERRUPTED = 130      # Ctrl-C (SIGTERM: 143, SIGHUP: 129, i.e. 128 + the signal)

EXIT_CODES_HELP = """\
exit codes:
  0    success (every --expect text seen, or the command completed)
  1    --expect text not seen before --timeout
  2    bad usage or bad input
  3    NBD failure (connect, negotiation, protocol, server error; --timeout reached
       while waiting for the server; the disk's connection lost for good)
  4    guest crash (triple fault, invalid opcode, unmapped memory, halted)
  5    boot failed (no boot signature, int 18h from the guest)
  6    local I/O error (image, overlay or target file; a file another process has locked)
  7    breakpoint (the CPU reached a --break address; a report is on stderr)
  8    the guest reset the machine (with --no-reboot)
  130  interrupted (Ctrl-C); 143 SIGTERM, 129 SIGHUP
A closed stdout (`| head -1`) changes no exit code."""


def seconds(text: str) -> float:
    """argparse type for a duration: a positive, finite number of seconds (float() takes nan and inf)."""
    import argparse
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 10 ** 7:   # written so that nan fails it too
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def port(text: str) -> int:
    """argparse type for a TCP port (0: any free one)."""
    import argparse
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, not {text}")
    return value


# Block-device error values: NBD's (proto.md "Error values"), which are Linux's numbers. Every device
# reports its failures in them (DiskError.errno), the NBD client receives them and the server sends them.
EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95
ENOTCONN = 107  # never on the wire: what an NBD client's stranded requests fail with
ESHUTDOWN = 108

ERRNO_NAMES = {
    EPERM: "EPERM", EIO: "EIO", ENOMEM: "ENOMEM", EINVAL: "EINVAL", ENOSPC: "ENOSPC",
    EOVERFLOW: "EOVERFLOW", ENOTSUP: "ENOTSUP", ESHUTDOWN: "ESHUTDOWN", ENOTCONN: "ENOTCONN",
}


class DiskError(Exception):
    """A block-device operation failed; `errno` is one of the error values above."""

    errno = EIO

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        if errno is not None:
            self.errno = errno


class DiskIOError(DiskError):
    errno = EIO


class DiskReadOnlyError(DiskError):
    errno = EPERM


class DiskRangeError(DiskError):
    errno = EINVAL   # reads past the end; writes past the end are ENOSPC


class DiskUnsupportedError(DiskError):
    errno = ENOTSUP


class NbdbootError(Exception):
    """Base of errors that end a command with a one-line message."""

    exit_code = EXIT_USAGE


class UsageError(NbdbootError):
    exit_code = EXIT_USAGE


class LocalIOError(NbdbootError):
    exit_code = EXIT_IO


class BootFailed(NbdbootError):
    exit_code = EXIT_BOOT_FAILED


class BreakpointReached(NbdbootError):
    """The CPU reached a --break address; `report` shows the machine there."""

    exit_code = EXIT_BREAKPOINT

    def __init__(self, message: str, report: str = ""):
        super().__init__(message)
        self.report = report
