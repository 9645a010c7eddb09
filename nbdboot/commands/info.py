"""`nbdboot info URI [--json]`: what a server says about an export (like nbdinfo)."""

from __future__ import annotations

import json

from nbdboot.errors import seconds
from nbdboot.nbd import protocol as P
from nbdboot.nbd.client import NbdClient, list_meta_contexts


def describe(uri: str, timeout: float) -> dict:
    with NbdClient(uri, timeout=timeout, connect_timeout=timeout, reconnect=False) as c:
        bs = c.block_sizes
        info = {
            "uri": str(c.uri),
            "protocol": c.protocol,
            "TLS": c.export.tls,
            "export-name": c.export_name,
            "description": c.description,
            "export-size": c.size,
            "is_read_only": c.read_only,
            "can_flush": c.can_flush,
            "can_fua": c.can_fua,
            "can_trim": c.can_trim,
            "can_zero": c.can_zero,
            "can_fast_zero": c.can_fast_zero,
            "can_cache": c.can_cache,
            "can_multi_conn": c.can_multi_conn,
            "can_df": c.can_df,
            "is_rotational": c.is_rotational,
            "structured_replies": c.structured,
            "transmission-flags": c.flags,
            "block_size_minimum": bs.minimum,
            "block_size_preferred": bs.preferred,
            "block_size_maximum": bs.maximum,
            "contexts": [],
        }
    if info["structured_replies"]:
        try:
            info["contexts"] = list_meta_contexts(uri, timeout=timeout)
        except Exception:  # noqa: BLE001 - listing contexts is optional information
            info["contexts"] = []
    return info


def handler(args) -> int:
    info = describe(args.uri, args.timeout)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"export=\"{info['export-name']}\":")
    if info["description"]:
        print(f"\tdescription: {info['description']}")
    print(f"\texport-size: {info['export-size']}")
    print(f"\turi: {info['uri']}")
    print(f"\tprotocol: {info['protocol']}" + (" with TLS" if info["TLS"] else "") +
          (", using structured packets" if info["structured_replies"] else ""))
    print(f"\tflags: {' '.join(P.describe_flags(info['transmission-flags'])) or '(none)'}"
          f" ({info['transmission-flags']:#x})")
    print(f"\tblock_size_minimum: {info['block_size_minimum']}")
    print(f"\tblock_size_preferred: {info['block_size_preferred']}")
    print(f"\tblock_size_maximum: {info['block_size_maximum']}")
    for name in ("is_read_only", "can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero",
                 "can_cache", "can_multi_conn", "can_df", "is_rotational"):
        print(f"\t{name}: {str(info[name]).lower()}")
    if info["contexts"]:
        print("\tcontexts:")
        for name in info["contexts"]:
            print(f"\t\t{name}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="show an export's size, flags and block sizes",
                              description=__doc__)
    p.add_argument("uri", metavar="URI")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--timeout", type=seconds, default=15.0, metavar="SECONDS")
    p.set_defaults(func=handler)
