"""The VGA registers text-mode boot code touches: the CRTC index/data pair (cursor
position and shape) and input status 1 (retrace), at the colour addresses."""

from __future__ import annotations


class VgaPorts:
    def __init__(self):
        self.crtc_index = 0
        self.crtc = bytearray(32)
        self._retrace = 0

    def attach(self, bus) -> None:
        bus.register((0x3D4,), lambda port: self.crtc_index, self._select, "vga")
        bus.register((0x3D5,), lambda port: self.crtc[self.crtc_index & 31], self._store, "vga")
        bus.register((0x3DA,), self._status, None, "vga")

    def _select(self, port: int, value: int) -> None:
        self.crtc_index = value

    def _store(self, port: int, value: int) -> None:
        self.crtc[self.crtc_index & 31] = value

    def _status(self, port: int) -> int:
        # Retrace and display-enable toggle on every read: wait-for-retrace loops end at once.
        self._retrace ^= 0x09
        return self._retrace
