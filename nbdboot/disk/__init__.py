"""Block devices: one interface (base.py), file and NBD devices (file.py, nbd.py), the store device (store.py)
with its copier threads (copier.py) and overlay files (overlay.py), opening a disk (open.py), deploy/restore
(deploy.py) and the copy engine of `nbdboot copy` (copy.py, parallel.py, stdio.py)."""

from nbdboot.disk.base import (
    BlockDevice,
    DiskError,
    DiskIOError,
    DiskRangeError,
    DiskReadOnlyError,
    DiskUnsupportedError,
    Extent,
    EXTENT_HOLE,
    EXTENT_ZERO,
)
from nbdboot.disk.file import FileDevice

__all__ = [
    "BlockDevice", "DiskError", "DiskIOError", "DiskRangeError", "DiskReadOnlyError",
    "DiskUnsupportedError", "Extent", "EXTENT_HOLE", "EXTENT_ZERO", "FileDevice",
]
