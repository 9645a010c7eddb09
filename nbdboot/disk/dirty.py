"""Dirty blocks from a qemu:dirty-bitmap:NAME meta context (an incremental restore's work list)."""

from __future__ import annotations

from nbdboot.disk.base import Extent
from nbdboot.errors import UsageError

STATE_DIRTY = 1          # bit 0 of qemu:dirty-bitmap:* block status flags
_MAX_QUERY = 0xFFFFF000  # block status lengths are 32-bit; stay block-aligned below 4 GiB


def dirty_extents(source_spec: str, bitmap: str) -> list[Extent]:
    """The ranges the server's bitmap marks dirty; raises if the server does not offer it."""
    from nbdboot.nbd.client import NbdClient
    from nbdboot.nbd.errors import NbdNegotiationError
    from nbdboot.nbd.uri import looks_like_uri

    if not looks_like_uri(source_spec):
        raise UsageError("--since-bitmap needs an NBD source (qemu-nbd -B NAME exports the bitmap)")
    context = f"qemu:dirty-bitmap:{bitmap}"
    client = NbdClient(source_spec, meta_contexts=(context,))
    try:
        if client.context_id(context) is None:
            raise NbdNegotiationError(f"the server offers no {context} meta context "
                                      f"(start qemu-nbd with -B {bitmap})")
        size = client.size
        out: list[Extent] = []
        pos = 0
        while pos < size:
            got = client.block_status(pos, min(size - pos, _MAX_QUERY)).get(context, [])
            if not got:
                break
            for length, flags in got:
                length = min(length, size - pos)
                if flags & STATE_DIRTY:
                    if out and out[-1].end == pos:
                        out[-1] = Extent(out[-1].offset, out[-1].length + length, STATE_DIRTY)
                    else:
                        out.append(Extent(pos, length, STATE_DIRTY))
                pos += length
                if pos >= size:
                    break
        if pos < size:
            # A server that stops answering early: copy the rest rather than trust silence.
            out.append(Extent(pos, size - pos, STATE_DIRTY))
        return out
    finally:
        client.close()
