"""The bench skeleton under QEMU+SeaBIOS: it reads everything it claims to, without errors.

Only the single-sector bench runs here (a few seconds); the 64 MiB one shares the same code and is run for figures
by bootimages/bench/run_qemu.py. No timing is asserted.
"""

from __future__ import annotations

from support import qemuref
from support.images import image


def test_single_sector_bench_reads_every_sector(nbdkit):
    server = nbdkit("-r", "file", str(image("bench-ext1")))
    result = qemuref.boot(server.uri, ["bench ext1: done"], readonly=True, expect_debug="END bench", timeout=120)
    assert result.matched, result.debug
    r = result.results["B.1"]
    assert (r["CALLS"], r["SECTORS"], r["ERRORS"], r["STATUS"]) == (16384, 16384, 0, 0)
    assert r["TICKS"] > 0
