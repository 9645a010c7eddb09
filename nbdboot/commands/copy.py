"""`nbdboot copy SRC DST`: copy between NBD exports and local files (like nbdcopy).

SRC and DST are NBD URIs (nbd://, nbds://, nbd+unix://, HOST:PORT) or local
paths; DST may be null: (or /dev/null) to read and discard; `-` is standard
input as SRC (a pipe is read to its end) and standard output as DST. Zero runs
become holes or WRITE_ZEROES; several requests stay in flight.
"""

from __future__ import annotations

import sys
import time

from nbdboot import interrupt
from nbdboot.errors import UsageError
from nbdboot.disk.copy import copy
from nbdboot.units import seconds, size_bytes


class _Bar:
    def __init__(self):
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        pct = 100.0 * done / total if total else 100.0
        filled = int(pct / 2.5)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (40 - filled)}] {pct:5.1f}%")
        sys.stderr.flush()

    def finish(self) -> None:
        sys.stderr.write("\n")


def handler(args) -> int:
    if args.request_size < 4096 or args.request_size > 32 << 20 or args.request_size & (args.request_size - 1):
        raise UsageError("--request-size must be a power of two between 4096 and 33554432")
    if args.sparse < 512 or args.sparse & (args.sparse - 1):
        raise UsageError("--sparse must be a power of two of at least 512")
    if not 1 <= args.requests <= 1024:
        raise UsageError("--requests must be between 1 and 1024")
    if not 1 <= args.connections <= 64:
        raise UsageError("--connections must be between 1 and 64")
    if args.timeout is not None and not 0 < args.timeout <= 10 ** 7:   # written so that nan fails it too
        raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    bar = _Bar() if (args.progress or (args.progress is None and sys.stderr.isatty())) else None
    options = dict(request_size=args.request_size, requests=args.requests,
                   sparse=0 if args.no_sparse else args.sparse, extents=not args.no_extents, flush=args.flush)
    if args.timeout is not None:
        # A hard deadline for the whole copy, reconnects included: a server that accepts and never
        # answers ends the copy here instead of after its full retry budget.
        interrupt.set_deadline(time.monotonic() + args.timeout, f"--timeout {args.timeout:g} s")
    try:
        result = _copy(args.source, args.destination, args.connections, bar, options)
    finally:
        interrupt.set_deadline(None)
        if bar is not None:
            bar.finish()
    if args.verbose:
        rate = result.size / result.seconds / 1e6 if result.seconds else 0
        print(f"nbdboot: copied {result.size} bytes ({result.data_bytes} data, {result.zero_bytes} zero)"
              f" in {result.seconds:.2f} s ({rate:.0f} MB/s)", file=sys.stderr)
    return 0


def _copy(source: str, destination: str, connections: int, bar, options: dict):
    """`-` is standard input as SRC and standard output as DST, as in nbdcopy."""
    from nbdboot.disk import stdio
    if source == "-" and not stdio.stdin_is_seekable():
        return stdio.copy_stream(destination, request_size=options["request_size"],
                                 sparse=options["sparse"], flush=options["flush"], progress=bar)
    if source == "-":
        source = "/dev/stdin"     # a file or block device redirected: copied like a local file
    if destination == "-":
        from nbdboot.disk.copy import Copier, LocalEnd, close_end, open_source
        src = open_source(source)
        try:
            out = stdio.StdoutDevice(src.size)
            result = Copier(src, LocalEnd(out), progress=bar, **options).run()
            out.close()
            return result
        finally:
            close_end(src)
    if connections > 1:
        from nbdboot.disk.parallel import copy_parallel
        return copy_parallel(source, destination, connections, progress=bar, **options)
    return copy(source, destination, progress=bar, **options)


def register(subparsers) -> None:
    p = subparsers.add_parser("copy", help="copy between NBD exports and local files", description=__doc__)
    p.add_argument("source", metavar="SRC", help="NBD URI, HOST:PORT, local file or - (standard input)")
    p.add_argument("destination", metavar="DST",
                   help="NBD URI, HOST:PORT, local file, null: or - (standard output)")
    p.add_argument("-C", "--connections", type=int, default=1, metavar="N",
                   help="connections per NBD end when every NBD end advertises multi-conn, each copying its "
                        "own range (default 1)")
    p.add_argument("--request-size", type=size_bytes, default=2 << 20, metavar="SIZE",
                   help="bytes per request (default 2 MiB; raised to the server's preferred size, "
                        "lowered to its maximum)")
    p.add_argument("--requests", type=int, default=16, metavar="N", help="requests in flight (default 16)")
    p.add_argument("--no-extents", action="store_true", help="do not ask the source for its allocation map")
    p.add_argument("--no-sparse", action="store_true", help="write zeroes as data, never as holes")
    p.add_argument("--sparse", type=size_bytes, default=65536, metavar="SIZE",
                   help="granularity of zero detection in data blocks (default 64K)")
    p.add_argument("--flush", action="store_true", help="flush the destination at the end (default: no flush)")
    p.add_argument("--timeout", type=seconds, default=None, metavar="DURATION",
                   help="give up when the whole copy has not finished after DURATION (exit 3; default: no limit, "
                        "each NBD command still gives up after 15 s of silence and 10 reconnect tries)")
    p.add_argument("-p", "--progress", action="store_true", default=None,
                   help="progress bar on stderr even when it is not a terminal (default: only on a terminal)")
    p.add_argument("-v", "--verbose", action="store_true", help="print a summary (default: quiet)")
    p.set_defaults(func=handler)
