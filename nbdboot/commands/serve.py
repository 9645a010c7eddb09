"""`nbdboot serve FILE...`: serve local images over NBD until interrupted."""

from __future__ import annotations

import os
import sys

from nbdboot.disk.file import FileDevice
from nbdboot.errors import UsageError, port
from nbdboot.nbd.server import NbdServer


def handler(args) -> int:
    if args.name and len(args.name) != len(args.files):
        raise UsageError("give --name once per FILE (or not at all)")
    if not 0 <= args.port < 65536:
        raise UsageError(f"bad port {args.port}")
    names = args.name or ([""] if len(args.files) == 1 else
                          [os.path.basename(f) for f in args.files])
    if len(set(names)) != len(names):
        raise UsageError("export names must differ (use --name)")
    devices = {}
    try:
        for name, path in zip(names, args.files):
            if not os.path.isfile(path) and not os.path.exists(path):
                raise UsageError(f"no such file: {path}")
            devices[name] = FileDevice(path, read_only=args.read_only)
            devices[name].description = os.path.basename(path)
        server = NbdServer(devices, host=args.bind, port=args.port, unix=args.unix,
                           read_only=args.read_only)
        try:
            server.start()
        except OSError as e:
            where = args.unix or f"{args.bind}:{args.port}"
            raise UsageError(f"cannot listen on {where}: {e.strerror or e}") from None
        for name in devices:
            print(f"nbdboot: serving {server.uri_for(name)}", file=sys.stderr, flush=True)
        server.serve_forever()
    finally:
        for dev in devices.values():
            dev.close()
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve image files over NBD", description=__doc__)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--port", type=port, default=10809, help="TCP port (0 = any free port; default 10809)")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--unix", metavar="PATH", help="listen on a unix socket instead of TCP (default: TCP)")
    p.add_argument("--read-only", action="store_true", help="refuse writes (default: writable)")
    p.add_argument("--name", action="append", metavar="EXPORT",
                   help="export name (repeat once per FILE; default '' for one file, else basenames)")
    p.set_defaults(func=handler)
