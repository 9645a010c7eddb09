"""nbdboot: boot real x86 boot code from a disk served over NBD.

`nbdboot.boot(...)` is the Python API (nbdboot/api.py, docs/api.md); it is imported on first use so that
the command line's start-up does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from nbdboot.api import Boot, BootOptions, BootStopped, WaitTimeout, boot

_API = ("boot", "Boot", "BootOptions", "BootStopped", "WaitTimeout")


def __getattr__(name: str):
    if name in _API:
        from nbdboot import api
        return getattr(api, name)
    raise AttributeError(f"module 'nbdboot' has no attribute {name!r}")
