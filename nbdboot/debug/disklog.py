"""The int 13h log: one line per call, naming what the sectors are.

    [   0.412] 80 42h read   LBA 2151+4        buf 0070:0000  ok       0.31 ms  /KERNEL.SYS [8..12)

Fields: guest time (seconds since power-on), drive, function, the sectors (CHS
as the guest gave them and the LBA they became, +count), the buffer, the status
and the host time the call took, then what the sectors are on the disk
(debug/fsmap.py). The map is read through the drive's own block device, so it
sees the export or the overlay as the guest does, and is rebuilt (at most once
a second) after the guest writes outside file data.
"""

from __future__ import annotations

import collections
import time

from nbdboot.debug.fsmap import DiskMap

FUNCTIONS = {
    0x00: "reset", 0x01: "status", 0x02: "read", 0x03: "write", 0x04: "verify", 0x08: "params",
    0x0C: "seek", 0x0D: "reset-alt", 0x10: "ready", 0x11: "recal", 0x14: "diag", 0x15: "type",
    0x16: "changed", 0x41: "ext-check", 0x42: "read", 0x43: "write", 0x44: "verify", 0x47: "seek",
    0x48: "ext-params", 0x4B: "cd-status", 0x4D: "cd-catalog",
}
REBUILD_INTERVAL = 1.0


class DiskLog:
    """The int 13h observer: writes lines to `out` (a text stream, or None) and keeps the recent ones."""

    def __init__(self, machine, out=None, keep: int = 64):
        self.machine = machine
        self.out = out
        self.recent: collections.deque[str] = collections.deque(maxlen=keep)
        self.calls = 0
        self._maps: dict[int, tuple[DiskMap | None, float, bool]] = {}  # id(device) -> (map, built at, stale)
        machine.bios.disk.observer = self

    def close(self) -> None:
        if self.machine.bios.disk.observer is self:
            self.machine.bios.disk.observer = None
        if self.out is not None:
            self.out.flush()

    # -- the observer ----------------------------------------------------------------
    def __call__(self, dl: int, ah: int, drive, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.calls += 1
        cpu = self.machine.cpu
        transfer = self.machine.bios.disk.transfer
        name = FUNCTIONS.get(ah, "?")
        where = ""
        buffer = ""
        what = ""
        if transfer is not None and drive is not None:
            lba, count, linear, write = transfer
            if ah in (0x02, 0x03, 0x04):
                cx, dh = cpu.get("cx"), cpu.get("dh")
                where = f"CHS {((cx & 0xC0) << 2) | (cx >> 8)}/{dh}/{cx & 0x3F} = LBA {lba}+{count}"
                buffer = f"{cpu.get('es'):04X}:{cpu.get('bx'):04X}"
            else:
                where = f"LBA {lba}+{count}"
                buffer = self._dap_buffer(linear)
            size = drive.sector_size
            if count and lba + count <= drive.capacity:
                what = self.describe(drive, lba * size, (lba + count) * size, size)
                if write:
                    self._note_write(drive, lba * size, (lba + count) * size)
        status_text = "ok" if status == 0 else f"status {status:02X}h"
        line = (f"[{self.machine.clock.now:8.3f}] {dl:02X} {ah:02X}h {name:<10} {where:<26} "
                f"{'buf ' + buffer if buffer else '':<14} {status_text:<11} {elapsed * 1000:6.2f} ms"
                + (f"  {what}" if what else ""))
        self.recent.append(line)
        if self.out is not None:
            self.out.write(line + "\n")

    def _dap_buffer(self, linear: int) -> str:
        """The DAP's buffer as the guest wrote it (segment:offset, or a flat address)."""
        cpu = self.machine.cpu
        try:
            dap = cpu.read((cpu.get("ds") << 4) + cpu.get("si"), 8)
        except Exception:  # noqa: BLE001 - the DAP was unreadable: the call failed before a transfer
            return f"{linear:#x}"
        offset, segment = dap[4] | dap[5] << 8, dap[6] | dap[7] << 8
        if (segment, offset) == (0xFFFF, 0xFFFF) or (segment << 4) + offset != linear:
            return f"{linear:#010x}"
        return f"{segment:04X}:{offset:04X}"

    # -- the map ----------------------------------------------------------------------
    def disk_map(self, drive) -> DiskMap | None:
        key = id(drive.device)
        entry = self._maps.get(key)
        now = time.monotonic()
        if entry is None or (entry[2] and now - entry[1] >= REBUILD_INTERVAL):
            device = drive.device
            try:
                disk_map = DiskMap(lambda offset, length: device.pread(length, offset), device.size)
            except Exception as e:  # noqa: BLE001 - a map is an aid; a disk it cannot read gets none
                disk_map = None
                if self.out is not None:
                    self.out.write(f"nbdboot: int13 log: cannot map drive {drive.number:02X}h: {e}\n")
            entry = (disk_map, now, False)
            self._maps[key] = entry
        return entry[0]

    def describe(self, drive, start: int, end: int, unit: int) -> str:
        disk_map = self.disk_map(drive)
        return "" if disk_map is None else disk_map.describe(start, end, unit)

    def _note_write(self, drive, start: int, end: int) -> None:
        entry = self._maps.get(id(drive.device))
        if entry is None or entry[0] is None or entry[2]:
            return
        for piece in entry[0].pieces(start, end):
            if not piece.label.startswith("/") or piece.label.endswith("(directory)"):
                self._maps[id(drive.device)] = (entry[0], entry[1], True)
                return
