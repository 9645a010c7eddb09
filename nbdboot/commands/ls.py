"""`nbdboot ls URI`: list the exports a server offers (NBD_OPT_LIST)."""

from __future__ import annotations

from nbdboot.errors import seconds
from nbdboot.nbd.client import list_exports


def handler(args) -> int:
    for name, description in list_exports(args.uri, timeout=args.timeout):
        print(f"{name}\t{description}" if description else name)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("ls", help="list a server's exports", description=__doc__)
    p.add_argument("uri", metavar="URI", help="nbd://HOST[:PORT], nbd+unix:///?socket=PATH or HOST:PORT")
    p.add_argument("--timeout", type=seconds, default=15.0, metavar="SECONDS")
    p.set_defaults(func=handler)
