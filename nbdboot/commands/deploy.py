"""`nbdboot deploy SRC TARGET`: copy an export to a local disk, sparsely and resumably."""

from __future__ import annotations

import sys
import time

from nbdboot.console.progress import Progress, summary
from nbdboot.disk.deploy import copy_to_target
from nbdboot.disk.store import SYNC_POLICIES
from nbdboot.errors import UsageError, seconds


def add_copy_arguments(p) -> None:
    p.add_argument("source", metavar="SRC", help="NBD URI (nbd://, nbd+unix://, nbds://) or image path")
    p.add_argument("target", metavar="TARGET", help="raw file (created if missing), block device or NBD URI")
    p.add_argument("--map", dest="map_path", metavar="PATH",
                   help="block map (default TARGET.nbdboot-map; required for an NBD target)")
    p.add_argument("--resume", dest="resume", action="store_true", default=True,
                   help="continue an interrupted copy when the map exists (the default)")
    p.add_argument("--restart", dest="resume", action="store_false",
                   help="ignore an existing map and copy everything again")
    p.add_argument("--connections", type=int, default=4, metavar="N",
                   help="source connections when the server advertises multi-conn (default 4)")
    p.add_argument("--sync", choices=SYNC_POLICIES, default="each",
                   help="when a copied block counts as persisted: each write (default) or periodically")
    p.add_argument("--status-interval", type=seconds, default=5.0, metavar="SECONDS",
                   help="seconds between status lines when stderr is not a terminal (default 5)")
    p.add_argument("--retries", type=int, default=10, metavar="N",
                   help="times to reopen a lost connection to SRC before giving up (default 10)")
    p.add_argument("--retry-delay", type=seconds, default=5.0, metavar="SECONDS",
                   help="wait between reopen tries (default 5, as iPXE)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, only the summary")


def run_copy(args, since_bitmap: str | None = None) -> int:
    if args.connections < 1 or args.connections > 64:
        raise UsageError("--connections must be between 1 and 64")
    if not 0 <= args.retries <= 1000:
        raise UsageError(f"--retries must be between 0 and 1000, not {args.retries}")
    if not 0 < args.status_interval <= 86400:   # written so that nan fails it too
        raise UsageError(f"--status-interval must be a positive number of seconds, not {args.status_interval}")
    progress = Progress(interval=args.status_interval, quiet=args.quiet)
    started = time.monotonic()
    try:
        store = copy_to_target(args.source, args.target, map_path=args.map_path, resume=args.resume,
                               connections=args.connections, since_bitmap=since_bitmap,
                               sync=args.sync, progress=progress,
                               client_options=dict(retries=args.retries, retry_delay=args.retry_delay))
    except KeyboardInterrupt:   # Ctrl-C, SIGTERM, SIGHUP: what was copied is committed
        if progress.stats is not None:
            print(f"nbdboot: stopped (run again to resume): {summary(progress.stats, time.monotonic() - started)}",
                  file=sys.stderr)
        raise
    print(f"nbdboot: {summary(store.stats, time.monotonic() - started)}", file=sys.stderr)
    return 0


def handler(args) -> int:
    return run_copy(args)


def register(subparsers) -> None:
    p = subparsers.add_parser("deploy", help="copy an export to a local target (resumable, sparse)",
                              description=__doc__)
    add_copy_arguments(p)
    p.set_defaults(func=handler)
