"""`nbdboot info URI [--json]`: what a server says about an export, in nbdinfo's text and JSON shapes."""

from __future__ import annotations

import inspect
import json

from nbdboot.nbd.client import Export, NbdClient, list_meta_contexts
from nbdboot.units import positive_seconds


# The Export's block sizes until an INFO_BLOCK_SIZE replaces them: its constructor's default object.
_UNSENT_BLOCK_SIZES = inspect.signature(Export.__init__).parameters["block_sizes"].default


def describe(uri: str, timeout: float) -> dict:
    with NbdClient(uri, timeout=timeout, connect_timeout=timeout, reconnect=False) as c:
        bs = c.block_sizes
        sent = bs is not _UNSENT_BLOCK_SIZES
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
            # None when the server sent no INFO_BLOCK_SIZE (nbdinfo then shows none)
            "block_size_minimum": bs.minimum if sent else None,
            "block_size_preferred": bs.preferred if sent else None,
            "block_size_maximum": bs.maximum if sent else None,
            "contexts": [],
        }
    if info["structured_replies"]:
        try:
            info["contexts"] = list_meta_contexts(uri, timeout=timeout)
        except Exception:  # noqa: BLE001 - listing contexts is optional information
            info["contexts"] = []
    return info


# nbdinfo's order of the boolean flags, then the block sizes
_FLAGS = ("is_rotational", "is_read_only", "can_cache", "can_df", "can_fast_zero", "can_flush", "can_fua",
          "can_multi_conn", "can_trim", "can_zero")
_BLOCK_SIZES = ("block_size_minimum", "block_size_preferred", "block_size_maximum")


def human_size(size: int) -> str:
    """libnbd's human_size: the largest binary unit that divides the size exactly (1M, 720K, 1000)."""
    units = ["", "K", "M", "G", "T", "P", "E"]
    i = 0
    while size and size % 1024 == 0 and i < len(units) - 1:
        size //= 1024
        i += 1
    return f"{size}{units[i]}"


def nbdinfo_export(info: dict) -> dict:
    """One entry of nbdinfo --json's "exports", from describe()."""
    out = {"export-name": info["export-name"]}
    if info["description"]:
        out["description"] = info["description"]
    out["uri"] = info["uri"]
    out["contexts"] = list(info["contexts"])
    for name in _FLAGS:
        out[name] = info[name]
    for name in _BLOCK_SIZES:
        if info[name] is not None:
            out[name] = info[name]
    out["export-size"] = info["export-size"]
    out["export-size-str"] = human_size(info["export-size"])
    return out


def nbdinfo_document(exports: list[dict], first: dict) -> dict:
    """nbdinfo --json's (and --list --json's) document: the connection, then the exports."""
    return {"protocol": first["protocol"], "TLS": first["TLS"], "structured": first["structured_replies"],
            "exports": [nbdinfo_export(e) for e in exports]}


def protocol_line(info: dict) -> str:
    return (f"protocol: {info['protocol']} {'with' if info['TLS'] else 'without'} TLS"
            + (", using structured packets" if info["structured_replies"] else ""))


def export_lines(info: dict) -> list[str]:
    """nbdinfo's text block for one export."""
    size = info["export-size"]
    human = human_size(size)
    lines = [f'export="{info["export-name"]}":']
    if info["description"]:
        lines.append(f"\tdescription: {info['description']}")
    lines.append(f"\texport-size: {size}" + (f" ({human})" if human != str(size) else ""))
    lines.append(f"\turi: {info['uri']}")
    if info["contexts"]:
        lines.append("\tcontexts:")
        lines.extend(f"\t\t{name}" for name in info["contexts"])
    lines.extend(f"\t{name}: {str(info[name]).lower()}" for name in _FLAGS)
    lines.extend(f"\t{name}: {info[name]}" for name in _BLOCK_SIZES if info[name] is not None)
    return lines


def handler(args) -> int:
    info = describe(args.uri, args.timeout)
    if args.json:
        print(json.dumps(nbdinfo_document([info], info), indent=2))
        return 0
    print(protocol_line(info))
    print("\n".join(export_lines(info)))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="show an export's size, flags and block sizes",
                              description=__doc__)
    p.add_argument("uri", metavar="URI", help="nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH or HOST:PORT")
    p.add_argument("--json", action="store_true", help="nbdinfo --json's document")
    p.add_argument("--timeout", type=positive_seconds, default=15.0, metavar="DURATION",
                   help="give up connecting or waiting for a reply after DURATION (default 15s)")
    p.set_defaults(func=handler)
