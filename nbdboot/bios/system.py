"""int 11h (equipment), int 12h (base memory) and int 15h (system services).

int 15h covers what loaders and memory managers use: the memory map (E820,
E801, 88h), A20 control, the configuration table, the
block move HIMEM and MEMDISK use (87h), waits and the keyboard/device hooks;
APM 1.2 through the real-mode interface (53xxh: power off ends the run), and
the pointing-device interface (C2xxh) over the PS/2 mouse, with its IRQ12 path.
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
        self.wait_until: float | None = None  # end of an int 15h 86h wait in progress
        self.functions = {
            0x24: self.a20, 0x4F: self.keyboard_intercept, 0x86: self.wait, 0x87: self.block_move,
            0x88: self.extended_size, 0x90: self.device_busy, 0x91: self.device_busy,
            0xC0: self.config_table, 0xC1: self.ebda_segment, 0xE8: self.memory_e8,
            0x53: self.apm, 0xC2: self.pointing_device,
        }
        self.apm_connected = False
        self.mouse_enabled = False        # int 15h C200h: packets go to the far-call handler
        self.mouse_handler = 0            # segment:offset, 0 = none
        self.mouse_bytes: list[int] = []  # the packet being received on IRQ12

    def reset(self) -> None:
        self.wait_until = None
        self.apm_connected = False
        self.mouse_enabled = False
        self.mouse_handler = 0
        self.mouse_bytes = []

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
        """2400h/2401h gate A20 through port 92h, as SeaBIOS does; 2402h reports the gate."""
        cpu = self.m.cpu
        al = cpu.get("al")
        if al in (0, 1):
            ports = self.m.ports
            ports.write(0x92, 1, (ports.read(0x92, 1) & ~0x03) | (al << 1))
            return self._ok()
        if al == 2:
            cpu.set("al", 1 if cpu.a20 else 0)
            return self._ok()
        if al == 3:
            cpu.set("bx", 0x0003)  # keyboard controller and port 92h
            return self._ok()
        return False

    def keyboard_intercept(self):
        return None  # CF=1: "process this scan code", AH/AL untouched

    def wait(self):
        """int 15h 86h: wait CX:DX microseconds with interrupts on, as SeaBIOS does (IRQs and their
        handlers run meanwhile, whatever the caller's IF). The stub's int is re-executed until the
        time has come; the machine skips idle time to the next event."""
        cpu = self.m.cpu
        now = self.m.clock.now
        if self.wait_until is None:
            micros = (cpu.get("cx") << 16) | cpu.get("dx")
            self.wait_until = now + micros / 1e6
        if now < self.wait_until:
            self.m.wait_in_bios(rewind=2)
            self.m.wake_at(self.wait_until)
            return None
        self.wait_until = None
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

    # -- APM 1.2, real-mode interface ----------------------------------------------------
    APM_NOT_CONNECTED, APM_CONNECTED, APM_NO_16BIT, APM_NO_32BIT, APM_BAD_DEVICE = 0x03, 0x02, 0x05, 0x07, 0x09
    APM_NO_EVENTS = 0x80

    def _apm_error(self, code: int):
        self.m.cpu.set("ah", code)
        return None

    def apm(self):
        cpu = self.m.cpu
        al, bx = cpu.get("al"), cpu.get("bx")
        if al == 0x00:  # installation check
            if bx != 0:
                return self._apm_error(self.APM_BAD_DEVICE)
            cpu.set("ax", 0x0102)
            cpu.set("bx", 0x504D)  # "PM"
            cpu.set("cx", 0x0000)  # no 16/32-bit protected-mode interface
            return True
        if al == 0x01:  # connect the real-mode interface
            if bx != 0:
                return self._apm_error(self.APM_BAD_DEVICE)
            if self.apm_connected:
                return self._apm_error(self.APM_CONNECTED)
            self.apm_connected = True
            return self._ok()
        if al == 0x02:
            return self._apm_error(self.APM_NO_16BIT)
        if al == 0x03:
            return self._apm_error(self.APM_NO_32BIT)
        if al == 0x04:  # disconnect
            if not self.apm_connected:
                return self._apm_error(self.APM_NOT_CONNECTED)
            self.apm_connected = False
            return self._ok()
        if al == 0x05:  # CPU idle: sleep until the next interrupt, as hlt would
            self.m.wait_in_bios()
            return self._ok()
        if al == 0x07:  # set power state
            if cpu.get("cx") == 0x0003 and bx in (0x0001, 0x01FF):
                self.m.power_off("APM set power state: off")
            return self._ok()
        if al == 0x0A:  # power status: on mains, no battery
            cpu.set("bx", 0x01FF)
            cpu.set("cx", 0x80FF)
            cpu.set("dx", 0xFFFF)
            return self._ok()
        if al == 0x0B:
            return self._apm_error(self.APM_NO_EVENTS)
        if al == 0x0C:
            cpu.set("cx", 0)
            return self._ok()
        if al == 0x0E:  # driver version: this BIOS speaks 1.2
            cpu.set("ax", 0x0102)
            return True
        if al in (0x06, 0x08, 0x0D, 0x0F):  # CPU busy, enable/disable/engage power management
            return self._ok()
        return False

    # -- pointing device (PS/2 mouse) -----------------------------------------------------
    SAMPLE_RATES = (10, 20, 40, 60, 80, 100, 200)

    def pointing_device(self):
        """int 15h C2xxh as SeaBIOS's mouse.c, on the mouse behind the 8042's aux port."""
        cpu = self.m.cpu
        al, bh = cpu.get("al"), cpu.get("bh")
        kbc, mouse = self.m.kbc, self.m.mouse
        if al == 0x00:  # enable/disable
            if bh > 1:
                return self._mouse_error(0x01)
            if bh == 1 and not self.mouse_handler:
                return self._mouse_error(0x05)
            self.mouse_enabled = bool(bh)
            mouse.reporting = bool(bh)
            kbc.command_byte = (kbc.command_byte & ~0x20) | 0x02 if bh else kbc.command_byte
            return self._ok()
        if al in (0x01, 0x05):  # reset / initialize
            if al == 0x05 and not 1 <= bh <= 8:
                return self._mouse_error(0x02)
            mouse.defaults()
            self.mouse_enabled = False
            self.mouse_bytes = []
            if al == 0x01:
                cpu.set("bx", 0x00AA)  # device ID 00h, self-test passed
            return self._ok()
        if al == 0x02:
            if bh >= len(self.SAMPLE_RATES):
                return self._mouse_error(0x02)
            mouse.sample_rate = self.SAMPLE_RATES[bh]
            return self._ok()
        if al == 0x03:
            if bh > 3:
                return self._mouse_error(0x02)
            mouse.resolution = bh
            return self._ok()
        if al == 0x04:
            cpu.set("bh", 0x00)
            return self._ok()
        if al == 0x06:
            if bh == 0:
                status = (0x20 if mouse.reporting else 0) | (0x10 if mouse.scaling21 else 0)
                cpu.set("bl", status)
                cpu.set("cl", mouse.resolution)
                cpu.set("dl", mouse.sample_rate)
                return self._ok()
            if bh in (1, 2):
                mouse.scaling21 = bh == 2
                return self._ok()
            return self._mouse_error(0x01)
        if al == 0x07:
            self.mouse_handler = (cpu.get("es") << 16) | cpu.get("bx")
            self.m.cpu.write32(rom.ROM_BASE + rom.MOUSE_HANDLER, self.mouse_handler)
            return self._ok()
        return self._mouse_error(0x01)

    def _mouse_error(self, code: int):
        self.m.cpu.set("ah", code)
        return None

    def irq12(self) -> None:
        """The ROM's IRQ12 path: take the mouse byte; a complete packet goes to the C207h handler."""
        cpu = self.m.cpu
        byte = self.m.kbc.read_data()
        cpu.set("cx", 0)
        if not self.mouse_bytes and not byte & 0x08:
            return  # not the first byte of a packet: resynchronise
        self.mouse_bytes.append(byte)
        if len(self.mouse_bytes) < 3:
            return
        status, x, y = self.mouse_bytes
        self.mouse_bytes = []
        if self.mouse_enabled and self.mouse_handler:
            cpu.set("ax", status)
            cpu.set("bx", x)
            cpu.set("dx", y)
            cpu.set("cx", 1)
