"""int 11h (equipment), int 12h (base memory) and int 15h (system services).

int 15h covers what loaders and memory managers use: the memory map (E820,
E801, 88h), A20 control, the configuration table, the
block move HIMEM and MEMDISK use (87h), waits and the keyboard/device hooks;
APM 1.2 through the real-mode interface (53xxh: power off ends the run), and
the pointing-device interface (C2xxh) over the PS/2 mouse, with its IRQ12 path.

int 15h functions follow bios/service.py: None (success, AH as left), a status
(AH = status; 00h success, else CF set; 86h for what is not supported) or CARRY.
int 15h has no status byte in the BDA. Each docstring is the register contract.
"""

from __future__ import annotations

import struct

from nbdboot.machine import rom
from nbdboot.bios.bda import Bda
from nbdboot.bios.service import CARRY, OK, UNSUPPORTED, Dispatcher
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
        # the dispatcher: the function for AH, its return given to the caller as AH and CF
        self.int15 = Dispatcher(machine.cpu, self.functions, UNSUPPORTED, "System.int15")
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
        """INT 11 - Equipment list. Return: AX = the BDA's equipment word (40:10). FLAGS unchanged."""
        self.m.cpu.set("ax", self.bda.equipment_list_flags)

    def int12(self) -> None:
        """INT 12 - Base memory size. Return: AX = KiB below the EBDA (40:13). FLAGS unchanged."""
        self.m.cpu.set("ax", self.bda.mem_size_kb)

    def a20(self):
        """INT 15,24 - A20 gate. Entry: AL 00h disable / 01h enable (through port 92h, as SeaBIOS),
        02h query, 03h query support. Return: status 00h; 02h: AL = 1 if the gate is on; 03h: BX = 0003h
        (keyboard controller and port 92h). Other AL: 86h."""
        cpu = self.m.cpu
        al = cpu.get("al")
        if al in (0, 1):
            ports = self.m.ports
            ports.write(0x92, 1, (ports.read(0x92, 1) & ~0x03) | (al << 1))
            return OK
        if al == 2:
            cpu.set("al", 1 if cpu.a20 else 0)
            return OK
        if al == 3:
            cpu.set("bx", 0x0003)  # keyboard controller and port 92h
            return OK
        return UNSUPPORTED

    def keyboard_intercept(self):
        """INT 15,4F - Keyboard intercept. Entry: AL scan code. Return: CARRY (CF set: "process this scan
        code"), AX unchanged."""
        return CARRY

    def wait(self):
        """INT 15,86 - Wait. Entry: CX:DX microseconds. Return: status 00h once the time has passed.

        With interrupts on, as SeaBIOS does (IRQs and their handlers run meanwhile, whatever the
        caller's IF). The stub's int is re-executed until the time has come (CARRY meanwhile, AH
        untouched); the machine skips idle time to the next event."""
        cpu = self.m.cpu
        now = self.m.clock.now
        if self.wait_until is None:
            micros = (cpu.get("cx") << 16) | cpu.get("dx")
            self.wait_until = now + micros / 1e6
        if now < self.wait_until:
            self.m.wait_in_bios(rewind=2)
            self.m.wake_at(self.wait_until)
            return CARRY
        self.wait_until = None
        return OK

    def block_move(self):
        """INT 15,87 - Block move. Entry: CX words, ES:SI a GDT whose descriptors at +10h and +18h give
        the source and target bases. Return: status 00h, or 02h when the move is longer than 64 KiB or
        leaves memory."""
        cpu = self.m.cpu
        gdt = (cpu.get("es") << 4) + cpu.get("si")
        table = cpu.read(gdt, 0x30)

        def base(offset):
            lo, hi = struct.unpack_from("<II", table, offset)
            return (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)

        src, dst = base(0x10), base(0x18)
        length = cpu.get("cx") * 2
        if length > 0x10000 or src + length > cpu.memory_size or dst + length > cpu.memory_size:
            return 0x02
        cpu.write(dst, cpu.read(src, length))
        return OK

    def extended_size(self):
        """INT 15,88 - Extended memory size. Return: AX = KiB above 1 MiB, at most FC00h (None: CF clear)."""
        self.m.cpu.set("ax", min(self.m.extended_bytes // 1024, 0xFC00))
        return None

    def device_busy(self):
        """INT 15,90/91 - Device busy / interrupt complete. Entry: AL device type. Return: status 00h."""
        return OK

    def config_table(self):
        """INT 15,C0 - System configuration table. Return: ES:BX = the table in the ROM; status 00h."""
        cpu = self.m.cpu
        cpu.set("es", rom.ROM_SEGMENT)
        cpu.set("bx", rom.CONFIG_TABLE)
        return OK

    def ebda_segment(self):
        """INT 15,C1 - EBDA segment. Return: ES = the EBDA's segment; CF clear, AH unchanged."""
        self.m.cpu.set("es", EBDA_SEGMENT)
        return None

    def memory_e8(self):
        """INT 15,E801 - Memory size: AX = CX = KiB between 1 and 16 MiB, BX = DX = 64 KiB blocks above.
        INT 15,E820 - Memory map. Entry: EDX 'SMAP', EBX continuation (0 first), ECX buffer size (>= 20),
        ES:DI buffer. Return: the entry (base, length, type) at ES:DI, EAX 'SMAP', ECX 20, EBX the next
        continuation (0 after the last). CF clear for both; 86h for a bad call or other AL."""
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
            return None
        if al == 0x20 and cpu.get("edx") == SMAP:
            entries = self.e820_map()
            index = cpu.get("ebx")
            if index >= len(entries) or cpu.get("ecx") < 20:
                return UNSUPPORTED
            base_addr, length, kind = entries[index]
            dest = (cpu.get("es") << 4) + cpu.get("di")
            cpu.write(dest, struct.pack("<QQI", base_addr, length, kind))
            cpu.set("eax", SMAP)
            cpu.set("ecx", 20)
            cpu.set("ebx", 0 if index + 1 == len(entries) else index + 1)
            return None
        return UNSUPPORTED

    # -- APM 1.2, real-mode interface ----------------------------------------------------
    APM_NOT_CONNECTED, APM_CONNECTED, APM_NO_16BIT, APM_NO_32BIT, APM_BAD_DEVICE = 0x03, 0x02, 0x05, 0x07, 0x09
    APM_NO_EVENTS = 0x80

    def apm(self):
        """INT 15,53 - APM 1.2, real-mode interface. Entry: AL function, BX device (0000h the BIOS,
        0001h/01FFh all devices). Return: 00h installation check AX 0102h, BX 'PM', CX 0 (no protected-mode
        interfaces); 01h/04h connect/disconnect; 05h idle until an interrupt; 07h with CX 0003h powers off;
        0Ah power status BX 01FFh, CX 80FFh, DX FFFFh; 0Ch CX 0; 0Eh (CX the driver's version) AX the
        connection's, 0100h/0101h for an older driver, else 0102h. Errors in AH with CF set:
        02h already connected, 03h not connected, 05h/07h no 16/32-bit interface, 09h bad device,
        80h no events; 86h for other AL."""
        cpu = self.m.cpu
        al, bx = cpu.get("al"), cpu.get("bx")
        if al == 0x00:  # installation check
            if bx != 0:
                return self.APM_BAD_DEVICE
            cpu.set("ax", 0x0102)
            cpu.set("bx", 0x504D)  # "PM"
            cpu.set("cx", 0x0000)  # no 16/32-bit protected-mode interface
            return None
        if al == 0x01:  # connect the real-mode interface
            if bx != 0:
                return self.APM_BAD_DEVICE
            if self.apm_connected:
                return self.APM_CONNECTED
            self.apm_connected = True
            return OK
        if al in (0x02, 0x03):  # protected-mode connect: this BIOS has no protected-mode entry points
            if bx != 0:
                return self.APM_BAD_DEVICE
            return self.APM_NO_16BIT if al == 0x02 else self.APM_NO_32BIT
        if al == 0x04:  # disconnect
            if not self.apm_connected:
                return self.APM_NOT_CONNECTED
            self.apm_connected = False
            return OK
        if al == 0x05:  # CPU idle: sleep until the next interrupt, as hlt would
            self.m.wait_in_bios()
            return OK
        if al == 0x07:  # set power state
            if cpu.get("cx") == 0x0003 and bx in (0x0001, 0x01FF):
                self.m.power_off("APM set power state: off")
            return OK
        if al == 0x0A:  # power status: on mains, no battery
            cpu.set("bx", 0x01FF)
            cpu.set("cx", 0x80FF)
            cpu.set("dx", 0xFFFF)
            return OK
        if al == 0x0B:
            return self.APM_NO_EVENTS
        if al == 0x0C:
            cpu.set("cx", 0)
            return OK
        if al == 0x0E:  # driver version: the connection speaks the older of the driver's (CX) and ours (1.2)
            if bx != 0:
                return self.APM_BAD_DEVICE
            driver = cpu.get("cx")
            cpu.set("ax", driver if 0x0100 <= driver < 0x0102 else 0x0102)
            return None
        if al in (0x06, 0x08, 0x0D, 0x0F):  # CPU busy, enable/disable/engage power management
            return OK
        return UNSUPPORTED

    # -- pointing device (PS/2 mouse) -----------------------------------------------------
    SAMPLE_RATES = (10, 20, 40, 60, 80, 100, 200)

    def pointing_device(self):
        """INT 15,C2 - Pointing device, as SeaBIOS's mouse.c, on the mouse behind the 8042's aux port.
        Entry: AL function, BH its argument: 00h enable (BH 1; needs a handler) / disable (BH 0); 01h reset
        (return BX 00AAh: ID 00h, self-test passed); 02h sample rate index (BH 0-6); 03h resolution (BH 0-3);
        04h get ID (return BH 00h); 05h initialize (BH packet size: 3; the handler must be set again after); 06h BH 00h status (return BL status,
        CL resolution, DL rate), BH 01h/02h scaling 1:1/2:1; 07h ES:BX the far-call packet handler.
        Return: status 00h, or in AH with CF set 01h bad function, 02h bad input, 03h interface error,
        05h no handler."""
        cpu = self.m.cpu
        al, bh = cpu.get("al"), cpu.get("bh")
        kbc, mouse = self.m.kbc, self.m.mouse
        if al == 0x00:  # enable/disable
            if bh > 1:
                return 0x01
            if bh == 1 and not self.mouse_handler:
                return 0x05
            self.mouse_enabled = bool(bh)
            mouse.reporting = bool(bh)
            kbc.command_byte = (kbc.command_byte & ~0x20) | 0x02 if bh else kbc.command_byte
            return OK
        if al in (0x01, 0x05):  # reset / initialize
            if al == 0x05:
                if bh != 3:
                    return 0x03  # SeaBIOS: 3-byte packets only (interface error)
                self.mouse_handler = 0  # as SeaBIOS: initializing forgets the handler; C207h comes after
            mouse.defaults()
            self.mouse_enabled = False
            self.mouse_bytes = []
            if al == 0x01:
                cpu.set("bx", 0x00AA)  # device ID 00h, self-test passed
            return OK
        if al == 0x02:
            if bh >= len(self.SAMPLE_RATES):
                return 0x02
            mouse.sample_rate = self.SAMPLE_RATES[bh]
            return OK
        if al == 0x03:
            if bh > 3:
                return 0x02
            mouse.resolution = bh
            return OK
        if al == 0x04:
            cpu.set("bh", 0x00)
            return OK
        if al == 0x06:
            if bh == 0:
                status = (0x20 if mouse.reporting else 0) | (0x10 if mouse.scaling21 else 0)
                cpu.set("bl", status)
                cpu.set("cl", mouse.resolution)
                cpu.set("dl", mouse.sample_rate)
                return OK
            if bh in (1, 2):
                mouse.scaling21 = bh == 2
                return OK
            return 0x01
        if al == 0x07:
            self.mouse_handler = (cpu.get("es") << 16) | cpu.get("bx")
            self.m.cpu.write32(rom.ROM_BASE + rom.MOUSE_HANDLER, self.mouse_handler)
            return OK
        return 0x01

    def irq12(self) -> None:
        """The ROM's IRQ12 path: take the mouse byte; a complete packet goes to the C207h handler."""
        cpu = self.m.cpu
        cpu.set("cx", 0)
        if not self.m.kbc.holds(aux=True):
            return  # as SeaBIOS's handle_74: no mouse byte in the buffer, nothing to take
        byte = self.m.kbc.read_data()
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
