"""Block devices: one interface, several backends (NBD, file, overlay, deploy)."""

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
