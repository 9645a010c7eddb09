"""int 14h, the BIOS serial services, on the machine's 16550As (COM1, COM2).

The BDA lists the ports at 400h (COM1-COM4 base addresses), their timeouts at
47Ch, and their count in the equipment word (bits 9-11), as SeaBIOS's POST does.
Sending is instant (the UART's THR is always empty); receiving waits for a byte
for the port's timeout in ticks, in virtual time, so a guest polling an idle
line does not hold the wall clock.
"""

from __future__ import annotations

from nbdboot.machine.devices.uart import LSR_DR

BAUD_DIVISORS = (1047, 768, 384, 192, 96, 48, 24, 12)  # 110, 150, 300, 600, 1200, 2400, 4800, 9600
TIMEOUT_TICKS = 10
TICK = 65536 / 1193182


class Serial:
    def __init__(self, machine):
        self.m = machine
        self._deadline: float | None = None  # virtual time a blocked AH=02h gives up

    def post(self) -> None:
        cpu = self.m.cpu
        ports = self.m.serial
        for i, uart in enumerate(ports):
            cpu.write16(0x400 + 2 * i, uart.base)
            cpu.write8(0x47C + i, TIMEOUT_TICKS)
        equipment = cpu.read16(0x410) & ~0x0E00
        cpu.write16(0x410, equipment | (len(ports) << 9))

    def _uart(self):
        cpu = self.m.cpu
        dx = cpu.get("dx")
        if dx > 3:
            return None
        base = cpu.read16(0x400 + 2 * dx)
        for uart in self.m.serial:
            if uart.base == base:
                return uart
        return None

    def _status(self, uart) -> int:
        lsr = uart.read(uart.base + 5)
        msr = uart.read(uart.base + 6)
        return (lsr << 8) | msr

    def int14(self) -> None:
        cpu = self.m.cpu
        ah = cpu.get("ah")
        uart = self._uart()
        if uart is None:
            cpu.set("ah", 0x80)  # no such port: time-out
            return
        base = uart.base
        if ah == 0x00:  # initialise: AL = baud(7-5) parity(4-3) stop(2) length(1-0)
            al = cpu.get("al")
            divisor = BAUD_DIVISORS[al >> 5]
            uart.write(base + 3, 0x80)
            uart.write(base + 0, divisor & 0xFF)
            uart.write(base + 1, divisor >> 8)
            uart.write(base + 3, al & 0x1F)
            cpu.set("ax", self._status(uart))
        elif ah == 0x01:  # send AL
            uart.write(base + 0, cpu.get("al"))
            cpu.set("ah", uart.read(base + 5))
        elif ah == 0x02:  # receive into AL, waiting up to the port's timeout
            uart.poll()
            lsr = uart.read(base + 5)
            if lsr & LSR_DR:
                self._deadline = None
                cpu.set("ax", ((lsr & 0x1E) << 8) | uart.read(base))
                return
            clock = self.m.clock
            if self._deadline is None:
                ticks = cpu.read8(0x47C + cpu.get("dx")) or TIMEOUT_TICKS
                self._deadline = clock.now + ticks * TICK
            if clock.now >= self._deadline:
                self._deadline = None
                cpu.set("ah", 0x80 | (lsr & 0x7F))
                return
            self.m.wait_in_bios(rewind=2)
        elif ah == 0x03:
            cpu.set("ax", self._status(uart))
        else:
            cpu.set("ah", 0x80)
