"""`nbdboot ls URI [--json]`: the exports a server lists (NBD_OPT_LIST), each described as `nbdinfo --list`
does (its text and JSON shapes): a connection to each export for its size, flags and meta contexts."""

from __future__ import annotations

import json

from nbdboot.nbd.client import list_exports
from nbdboot.nbd.uri import parse_uri
from nbdboot.units import positive_seconds


def handler(args) -> int:
    from nbdboot.commands.info import describe, export_lines, nbdinfo_document, protocol_line
    base = parse_uri(args.uri)
    infos = []
    for name, description in list_exports(base, timeout=args.timeout):
        info = describe(str(base.with_export(name)), args.timeout)
        if description and not info["description"]:
            info["description"] = description
        infos.append(info)
    if args.json:
        if not infos:
            print(json.dumps({"exports": []}, indent=2))
            return 0
        print(json.dumps(nbdinfo_document(infos, infos[0]), indent=2))
        return 0
    if infos:
        print(protocol_line(infos[0]))
    for info in infos:
        print("\n".join(export_lines(info)))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("ls", help="list a server's exports (as nbdinfo --list)", description=__doc__)
    p.add_argument("uri", metavar="URI", help="nbd://HOST[:PORT], nbd+unix:///?socket=PATH or HOST:PORT")
    p.add_argument("--json", action="store_true", help="nbdinfo --list --json's document")
    p.add_argument("--timeout", type=positive_seconds, default=15.0, metavar="DURATION",
                   help="give up connecting or waiting for a reply after DURATION (default 15s)")
    p.set_defaults(func=handler)
