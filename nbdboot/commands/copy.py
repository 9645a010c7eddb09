"""`nbdboot copy SRC DST`: copy between NBD exports and local files (like nbdcopy).

SRC and DST are NBD URIs (nbd://, nbds://, nbd+unix://, HOST:PORT) or local
paths; DST may be null: (or /dev/null) to read and discard. Zero runs become
holes or WRITE_ZEROES; several requests stay in flight.
"""

from __future__ import annotations

import sys
import time

from nbdboot.errors import UsageError
from nbdboot.nbd.copy import copy


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
    bar = _Bar() if (args.progress or (args.progress is None and sys.stderr.isatty())) else None
    try:
        result = copy(args.source, args.destination, request_size=args.request_size, requests=args.requests,
                      sparse=0 if args.no_sparse else args.sparse, extents=not args.no_extents, flush=args.flush, progress=bar)
    finally:
        if bar is not None:
            bar.finish()
    if args.verbose:
        rate = result.size / result.seconds / 1e6 if result.seconds else 0
        print(f"nbdboot: copied {result.size} bytes ({result.data_bytes} data, {result.zero_bytes} zero)"
              f" in {result.seconds:.2f} s ({rate:.0f} MB/s)", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("copy", help="copy between NBD exports and local files", description=__doc__)
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DST")
    p.add_argument("--request-size", type=int, default=2 << 20, metavar="BYTES",
                   help="bytes per request (default 2 MiB; raised to the server's preferred size, "
                        "lowered to its maximum)")
    p.add_argument("--requests", type=int, default=16, metavar="N", help="requests in flight (default 16)")
    p.add_argument("--no-extents", action="store_true", help="do not ask the source for its allocation map")
    p.add_argument("--no-sparse", action="store_true", help="write zeroes as data, never as holes")
    p.add_argument("--sparse", type=int, default=65536, metavar="BYTES",
                   help="granularity of zero detection in data blocks (default 65536)")
    p.add_argument("--flush", action="store_true", help="flush the destination at the end")
    p.add_argument("-p", "--progress", action="store_true", default=None, help="progress bar even when not a terminal")
    p.add_argument("-v", "--verbose", action="store_true", help="print a summary")
    p.set_defaults(func=handler)
