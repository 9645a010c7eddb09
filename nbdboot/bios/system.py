"""int 11h (equipment), int 12h (base memory) and int 15h (system services).

int 15h covers what loaders and memory managers use: the memory map (E820,
E801, 88h), A20 control (always on in Unicorn), the configuration table, the
block move HIMEM and MEMDISK use (87h), waits and the keyboard/device hooks.
"""

from __future__ import annotations

import struct

from nbdboot.machine import rom
from nbdboot.machine.cpu import FLAG_CF
from nbdboot.bios.bda import Bda
from nbdboot.machine.memmap import CONVENTIONAL_TOP, EBDA_SEGMENT, EXTENDED_BASE, VGA_WINDOW

SMAP = 0x534D4150
E820_RAM, E820_RESERVED = 1, 2


class System:
    def __init__(self, machine):
        self.m = machine
        self.bda = Bda(machine.cpu)
        self.functions = {
            0x24: self.a20, 0x4F: self.keyboard_intercept, 0x86: self.wait, 0x87: self.block_move,
            0x88: self.extended_size, 0x90: self.device_busy, 0x91: self.device_busy,
            0xC0: self.config_table, 0xC1: self.ebda_segment, 0xE8: self.memory_e8,
        }

    def e820_map(self) -> list[tuple[int, int, int]]:
        return [
            (0, CONVENTIONAL_TOP, E820_RAM),
            (CONVENTIONAL_TOP, VGA_WINDOW - CONVENTIONAL_TOP, E820_RESERVED),
            (0xF0000, 0x10000, E820_RESERVED),
            (EXTENDED_BASE, self.m.extended_bytes, E820_RAM),
        ]

    def int11(self) -> None:
        self.m.cpu.set("ax", self.bda.equipment_list_flags)

    def int12(self) -> None:
        self.m.cpu.set("ax", self.bda.mem_size_kb)

    def int15(self) -> None:
        cpu = self.m.cpu
        handler = self.functions.get(cpu.get("ah"))
        ok = handler() if handler else False
        if ok:
            cpu.set_frame_flags(0, FLAG_CF)
        else:
            if ok is False:
                cpu.set("ah", 0x86)
            cpu.set_frame_flags(FLAG_CF)

    def _ok(self) -> bool:
        self.m.cpu.set("ah", 0)
        return True

    def a20(self):
        cpu = self.m.cpu
        al = cpu.get("al")
        if al in (0, 1):
            return self._ok()
        if al == 2:
            cpu.set("al", 1)
            return self._ok()
        if al == 3:
            cpu.set("bx", 0x0003)  # keyboard controller and port 92h
            return self._ok()
        return False

    def keyboard_intercept(self):
        return None  # CF=1: "process this scan code", AH/AL untouched

    def wait(self):
        cpu = self.m.cpu
        micros = (cpu.get("cx") << 16) | cpu.get("dx")
        self.m.clock.skip_to(self.m.clock.now + micros / 1e6)
        return self._ok()

    def block_move(self):
        """Copy CX words between the source and target descriptors of the GDT at ES:SI."""
        cpu = self.m.cpu
        gdt = (cpu.get("es") << 4) + cpu.get("si")
        table = cpu.read(gdt, 0x30)

        def base(offset):
            lo, hi = struct.unpack_from("<II", table, offset)
            return (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)

        src, dst = base(0x10), base(0x18)
        length = cpu.get("cx") * 2
        if length > 0x10000 or src + length > cpu.memory_size or dst + length > cpu.memory_size:
            cpu.set("ah", 0x02)
            return None
        cpu.write(dst, cpu.read(src, length))
        return self._ok()

    def extended_size(self):
        self.m.cpu.set("ax", min(self.m.extended_bytes // 1024, 0xFC00))
        self.m.cpu.set_frame_flags(0, FLAG_CF)
        return True

    def device_busy(self):
        return self._ok()

    def config_table(self):
        cpu = self.m.cpu
        cpu.set("es", rom.ROM_SEGMENT)
        cpu.set("bx", rom.CONFIG_TABLE)
        return self._ok()

    def ebda_segment(self):
        self.m.cpu.set("es", EBDA_SEGMENT)
        return True

    def memory_e8(self):
        cpu = self.m.cpu
        al = cpu.get("al")
        ext = self.m.extended_bytes
        if al == 0x01:
            below16 = min(ext, 15 * 1024 * 1024) // 1024
            above16 = max(0, ext - 15 * 1024 * 1024) // 65536
            cpu.set("ax", below16)
            cpu.set("cx", below16)
            cpu.set("bx", above16)
            cpu.set("dx", above16)
            return True
        if al == 0x20 and cpu.get("edx") == SMAP:
            entries = self.e820_map()
            index = cpu.get("ebx")
            if index >= len(entries) or cpu.get("ecx") < 20:
                return False
            base_addr, length, kind = entries[index]
            dest = (cpu.get("es") << 4) + cpu.get("di")
            cpu.write(dest, struct.pack("<QQI", base_addr, length, kind))
            cpu.set("eax", SMAP)
            cpu.set("ecx", 20)
            cpu.set("ebx", 0 if index + 1 == len(entries) else index + 1)
            return True
        return False
