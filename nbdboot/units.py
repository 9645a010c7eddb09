"""Sizes and durations on the command line: `64M`, `2MiB`, `4096`; `20s`, `500ms`, `2m`, `1.5`.

argparse types: a bad value is an ArgumentTypeError, which the parser turns into one usage line (exit 2).
"""

from __future__ import annotations

import argparse
import re

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}
_TIME = re.compile(r"^\s*(-?[0-9]+(?:\.[0-9]*)?|-?\.[0-9]+)\s*(ms|s|m|min|h)?\s*$", re.IGNORECASE)
_TIME_SCALE = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_size(text: str, unit: int = 1) -> int:
    """Bytes in `text`: a number of `unit`s, or a number with K/M/G/T (binary: 1K = 1024, also KiB, KB).
    `parse_size("64M", unit=1 << 20)` is 64; a plain "64" is 64 units."""
    m = _SIZE.match(text)
    if not m or (m.group(3) and not m.group(2) and m.group(3).lower() != "b"):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4096, 64K, 2M, 1G)")
    number, prefix, _ = m.groups()
    if prefix or m.group(3):
        value = float(number) * (1 << _SIZE_SHIFT[prefix.lower()])
        if value % unit:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {_unit_name(unit)}")
        return int(value // unit)
    if "." in number:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(number)


def _unit_name(unit: int) -> str:
    return {1: "bytes", 1 << 10: "KiB", 1 << 20: "MiB", 1 << 30: "GiB"}.get(unit, f"{unit}-byte units")


def size_bytes(text: str) -> int:
    """argparse type: a size in bytes (4096, 64K, 2M)."""
    return parse_size(text, 1)


def size_mib(text: str) -> int:
    """argparse type: a size in MiB (64, 64M, 1G)."""
    return parse_size(text, 1 << 20)


def seconds(text: str) -> float:
    """argparse type: a duration in seconds (20, 20s, 1.5, 500ms, 2m, 1h). A negative, infinite or nan one is
    returned, for the command to reject in its own words."""
    m = _TIME.match(text)
    if not m:
        try:
            return float(text)    # nan, inf: returned for the command's own range check and one-line message
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 20, 20s, 500ms, 2m)") from None
    number, suffix = m.groups()
    return float(number) * _TIME_SCALE[suffix.lower() if suffix else None]


def positive_seconds(text: str) -> float:
    """argparse type: a positive, finite duration (`seconds` with the range checked here)."""
    value = seconds(text)
    if not 0 < value <= 10 ** 7:   # written so that nan fails it too
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value
