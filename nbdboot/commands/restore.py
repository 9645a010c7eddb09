"""`nbdboot restore SRC TARGET`: deploy from a backup export, optionally only its dirty blocks."""

from __future__ import annotations

from nbdboot.commands.deploy import add_copy_arguments, run_copy


def handler(args) -> int:
    return run_copy(args, since_bitmap=args.since_bitmap)


def register(subparsers) -> None:
    p = subparsers.add_parser("restore", help="restore a backup export onto TARGET (resumable)",
                              description=__doc__)
    add_copy_arguments(p)
    p.add_argument("--since-bitmap", metavar="NAME",
                   help="copy only blocks the server's qemu:dirty-bitmap:NAME marks dirty "
                        "(TARGET must already hold the backup the bitmap started from)")
    p.set_defaults(func=handler)
