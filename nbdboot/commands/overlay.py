"""`nbdboot overlay info|commit|discard FILE`: inspect, push or drop a guest's local writes."""

from __future__ import annotations

import sys

from nbdboot.console.progress import human
from nbdboot.disk.lock import check_free
from nbdboot.disk.overlay import commit_overlay, discard_overlay, overlay_info
from nbdboot.disk.open import open_device
from nbdboot.errors import UsageError


def handler(args) -> int:
    if args.action == "info":
        info = overlay_info(args.file)
        print(f"overlay:      {info.path}")
        print(f"source:       {info.source or '(unknown)'}")
        print(f"disk size:    {info.size} bytes ({human(info.size)})")
        print(f"block size:   {info.block_size}")
        print(f"guest blocks: {info.guest_blocks} written, {info.zero_blocks} zeroed "
              f"({human(info.guest_bytes)})")
        print(f"file usage:   {human(info.file_bytes)}")
        return 0
    if args.action == "discard":
        dropped = discard_overlay(args.file)
        print(f"nbdboot: discarded {human(dropped)} of guest writes", file=sys.stderr)
        return 0
    # commit: check the overlay before connecting anywhere
    uri = args.to or overlay_info(args.file).source
    if args.to:
        overlay_info(args.file)
    check_free(args.file, "overlay")
    if not uri:
        raise UsageError("the overlay does not record its export: give --to URI")
    dest = open_device(uri)
    try:
        stats = commit_overlay(args.file, dest, keep=args.keep)
    finally:
        dest.close()
    print(f"nbdboot: committed {human(stats['written'])} written, {human(stats['zeroed'])} zeroed "
          f"to {uri}" + ("" if args.keep else "; overlay emptied"), file=sys.stderr)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("overlay", help="inspect, commit or discard an overlay file",
                              description=__doc__)
    p.add_argument("action", choices=("info", "commit", "discard"))
    p.add_argument("file", metavar="FILE")
    p.add_argument("--to", metavar="URI", help="writable export to commit to (default: the overlay's source)")
    p.add_argument("--keep", action="store_true", help="keep the overlay's blocks after commit")
    p.set_defaults(func=handler)
