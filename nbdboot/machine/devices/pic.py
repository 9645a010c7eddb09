"""The two cascaded 8259A interrupt controllers (ports 20h-21h, A0h-A1h)."""

from __future__ import annotations


class Pic:
    """Two cascaded 8259s seen as 16 lines; vectors from ICW2 (08h and 70h at boot)."""

    def __init__(self):
        self.irr = 0
        self.isr = 0
        self.imr = 0  # POST leaves every line unmasked; the IRQs we raise have handlers
        self.base = [0x08, 0x70]
        self._icw_step = [0, 0]
        self._read_isr = [False, False]

    def raise_irq(self, irq: int) -> None:
        self.irr |= 1 << irq

    def pending(self) -> int | None:
        """The IRQ line the CPU would take now, or None."""
        ready = self.irr & ~self.imr & 0xFFFF
        if not ready:
            return None
        for irq in (0, 1, 8, 9, 10, 11, 12, 13, 14, 15, 3, 4, 5, 6, 7):  # IRQ2 cascades
            if ready & (1 << irq):
                if self.isr & ((1 << (irq + 1)) - 1 if irq < 8 else 0x0007 | ((1 << (irq + 1)) - 1) & 0xFF00):
                    return None  # a higher or equal priority IRQ is in service
                return irq
        return None

    def acknowledge(self, irq: int) -> int:
        self.irr &= ~(1 << irq)
        self.isr |= 1 << irq
        if irq >= 8:
            self.isr |= 1 << 2
        return (self.base[0] + irq) if irq < 8 else (self.base[1] + irq - 8)

    def out(self, chip: int, port_low: int, value: int) -> None:
        shift = 8 * chip
        if port_low == 0:
            if value & 0x10:  # ICW1
                self._icw_step[chip] = 2
                self.imr &= ~(0xFF << shift)
                self.isr &= ~(0xFF << shift)
                return
            if value & 0x08:  # OCW3
                if value & 0x02:
                    self._read_isr[chip] = bool(value & 1)
                return
            if value & 0x20:  # OCW2 EOI
                if value & 0x40:
                    self.isr &= ~(1 << ((value & 7) + shift))
                else:
                    chip_isr = (self.isr >> shift) & 0xFF
                    if chip_isr:
                        lowest = (chip_isr & -chip_isr).bit_length() - 1
                        self.isr &= ~(1 << (lowest + shift))
            return
        step = self._icw_step[chip]
        if step == 2:
            self.base[chip] = value & 0xF8
            self._icw_step[chip] = 3
        elif step == 3:
            self._icw_step[chip] = 4
        elif step == 4:
            self._icw_step[chip] = 0
        else:
            self.imr = (self.imr & ~(0xFF << shift)) | (value << shift)

    def attach(self, bus) -> None:
        bus.register((0x20, 0x21), lambda port: self.read(0, port & 1), lambda port, v: self.out(0, port & 1, v), "8259 master")
        bus.register((0xA0, 0xA1), lambda port: self.read(1, port & 1), lambda port, v: self.out(1, port & 1, v), "8259 slave")

    def read(self, chip: int, port_low: int) -> int:
        shift = 8 * chip
        if port_low == 1:
            return (self.imr >> shift) & 0xFF
        return ((self.isr if self._read_isr[chip] else self.irr) >> shift) & 0xFF
