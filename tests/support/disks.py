"""Source images for the copy tests, reproducible from a seed."""

from __future__ import annotations

import random
from pathlib import Path


def make_source(path: Path, size: int, seed: int = 1) -> bytes:
    """A source image of `size` bytes: random data in about 70% of its MiBs, holes in the rest."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for mib in range(size >> 20):
            if rnd.random() < 0.7:
                f.seek(mib << 20)
                f.write(rnd.randbytes(1 << 20))
    return path.read_bytes()
