"""The two cascaded 8259A interrupt controllers (ports 20h-21h, A0h-A1h; ELCR 4D0h-4D1h).

As the 8259A datasheet (and QEMU's i8259.c) describe them: ICW1-ICW4
initialisation (vector base, cascade, single mode, auto-EOI), OCW1 masks, OCW2
EOIs (non-specific, specific, with rotation), OCW3 (IRR/ISR read select, poll,
special mask mode); fully nested priority with a rotatable lowest priority; the
slave's output is the master's IRQ2. An interrupt acknowledge that finds its
request gone gets the spurious vector (IRQ7 of that chip, ISR untouched), as on
the chip. Requests are edge-triggered (the ISA bus); the ELCR is kept for guests
that read it back.
"""

from __future__ import annotations


class Chip:
    def __init__(self, base: int):
        self.irr = 0
        self.isr = 0
        self.imr = 0
        self.base = base
        self.lowest = 7          # lowest priority line (rotation moves it); IR0 is highest at reset
        self.init_step = 0       # next ICW expected: 0 none (operational), 2, 3, 4
        self.needs_icw4 = False
        self.single = False
        self.auto_eoi = False
        self.rotate_on_aeoi = False
        self.read_isr = False
        self.poll = False
        self.special_mask = False
        self.elcr = 0

    def _priority(self, line: int) -> int:
        """0 = highest."""
        return (line - self.lowest - 1) & 7

    def _best(self, bits: int) -> int | None:
        best = None
        for line in range(8):
            if bits & (1 << line) and (best is None or self._priority(line) < self._priority(best)):
                best = line
        return best

    def request(self, cascade_pending: bool = False) -> int | None:
        """The line this chip would interrupt the CPU with now, or None."""
        irr = self.irr | (0x04 if cascade_pending else 0)
        line = self._best(irr & ~self.imr & 0xFF)
        if line is None:
            return None
        in_service = self.isr & ~self.imr if self.special_mask else self.isr
        current = self._best(in_service)
        if current is not None and self._priority(current) <= self._priority(line):
            return None
        return line

    def acknowledge(self, line: int) -> None:
        self.irr &= ~(1 << line)
        if self.auto_eoi:
            if self.rotate_on_aeoi:
                self.lowest = line
        else:
            self.isr |= 1 << line

    def write_command(self, value: int) -> None:
        if value & 0x10:  # ICW1
            self.reset_for_init()
            self.needs_icw4 = bool(value & 0x01)
            self.single = bool(value & 0x02)
            self.init_step = 2
            return
        if value & 0x08:  # OCW3
            if value & 0x04:
                self.poll = True
            if value & 0x02:
                self.read_isr = bool(value & 0x01)
            if value & 0x40:
                self.special_mask = bool(value & 0x20)
            return
        # OCW2
        command = value >> 5
        if command in (1, 5):  # non-specific EOI (5: and rotate)
            line = self._best(self.isr)
            if line is not None:
                self.isr &= ~(1 << line)
                if command == 5:
                    self.lowest = line
        elif command in (3, 7):  # specific EOI (7: and rotate)
            line = value & 7
            self.isr &= ~(1 << line)
            if command == 7:
                self.lowest = line
        elif command == 6:  # set priority
            self.lowest = value & 7
        elif command == 4:
            self.rotate_on_aeoi = True
        elif command == 0:
            self.rotate_on_aeoi = False

    def reset_for_init(self) -> None:
        elcr, base = self.elcr, self.base
        self.__init__(base)
        self.elcr = elcr

    def write_data(self, value: int) -> None:
        step = self.init_step
        if step == 2:
            self.base = value & 0xF8
            self.init_step = 4 if self.single else 3
            if self.single and not self.needs_icw4:
                self.init_step = 0
        elif step == 3:
            self.init_step = 4 if self.needs_icw4 else 0
        elif step == 4:
            self.auto_eoi = bool(value & 0x02)
            self.init_step = 0
        else:  # OCW1
            self.imr = value

    def read(self, port_low: int, poll_result) -> int:
        if self.poll:
            self.poll = False
            return poll_result()
        if port_low == 1:
            return self.imr
        return self.isr if self.read_isr else self.irr


class Pic:
    """The master (IRQ0-7) and slave (IRQ8-15 on the master's IRQ2), seen by the machine as 16 lines."""

    def __init__(self):
        self.master = Chip(0x08)
        self.slave = Chip(0x70)
        # POST leaves every line unmasked; the IRQs we raise have handlers.
        # callable(): an IRQ was raised, or an EOI or unmask let a waiting one through. The machine then ends
        # its slice, where IRQs are delivered: IRQ1 waiting behind IRQ0's handler would otherwise wait for
        # the next slice, which starts with the next tick.
        self.on_ready = None

    # The machine's view ----------------------------------------------------------------
    @property
    def irr(self) -> int:
        return self.master.irr | (self.slave.irr << 8)

    @property
    def isr(self) -> int:
        return self.master.isr | (self.slave.isr << 8)

    @property
    def imr(self) -> int:
        return self.master.imr | (self.slave.imr << 8)

    @property
    def base(self) -> list[int]:
        return [self.master.base, self.slave.base]

    def raise_irq(self, irq: int) -> None:
        if irq < 8:
            self.master.irr |= 1 << irq
        else:
            self.slave.irr |= 1 << (irq - 8)
        self._tell_if_ready()  # a device's IRQ inside a slice (an 8042 byte): delivered at the next block

    def _tell_if_ready(self) -> None:
        if self.on_ready is not None and self.pending() is not None:
            self.on_ready()

    def pending(self) -> int | None:
        """The IRQ line the CPU would take now, or None."""
        if not (self.master.irr or self.slave.irr):
            return None  # the common case, cheaply
        slave_line = self.slave.request()
        line = self.master.request(cascade_pending=slave_line is not None)
        if line is None:
            return None
        if line == 2 and slave_line is not None:
            return 8 + slave_line
        return line if line != 2 else None

    def acknowledge(self, irq: int | None = None) -> int:
        """The CPU's interrupt acknowledge: the vector, ISR set (unless auto-EOI). A request that
        went away before the acknowledge gets the spurious IRQ7 vector of its chip."""
        slave_line = self.slave.request()
        line = self.master.request(cascade_pending=slave_line is not None)
        if line is None:
            return self.master.base + 7
        self.master.acknowledge(line)
        if line != 2:
            return self.master.base + line
        if slave_line is None:
            return self.slave.base + 7
        self.slave.acknowledge(slave_line)
        return self.slave.base + slave_line

    def _poll(self, chip: Chip) -> int:
        """OCW3 poll: the highest request as 80h|line, acknowledged as by an INTA."""
        if chip is self.slave:
            line = self.slave.request()
            if line is None:
                return 0
            self.slave.acknowledge(line)
            return 0x80 | line
        slave_line = self.slave.request()
        line = self.master.request(cascade_pending=slave_line is not None)
        if line is None:
            return 0
        self.master.acknowledge(line)
        if line == 2 and slave_line is not None:
            self.slave.acknowledge(slave_line)
        return 0x80 | line

    # Ports --------------------------------------------------------------------------
    def out(self, chip: int, port_low: int, value: int) -> None:
        c = self.slave if chip else self.master
        if port_low == 0:
            c.write_command(value)
        else:
            c.write_data(value)
        self._tell_if_ready()

    def read(self, chip: int, port_low: int) -> int:
        c = self.slave if chip else self.master
        return c.read(port_low, lambda: self._poll(c))

    def attach(self, bus) -> None:
        bus.register((0x20, 0x21), lambda port: self.read(0, port & 1), lambda port, v: self.out(0, port & 1, v), "8259 master")
        bus.register((0xA0, 0xA1), lambda port: self.read(1, port & 1), lambda port, v: self.out(1, port & 1, v), "8259 slave")
        bus.register((0x4D0, 0x4D1), lambda port: (self.slave if port & 1 else self.master).elcr,
                     self._write_elcr, "8259 ELCR")

    def _write_elcr(self, port: int, value: int) -> None:
        # IRQ0-2 and IRQ8/13 are always edge (PIIX3 ELCR masks)
        if port & 1:
            self.slave.elcr = value & 0xDE
        else:
            self.master.elcr = value & 0xF8
