"""nbdboot: boot real x86 boot code from a disk served over NBD."""

__version__ = "0.1.0"
