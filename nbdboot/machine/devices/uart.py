"""The 16550A UART (COM1 at 3F8h/IRQ4, COM2 at 2F8h/IRQ3), modelled as QEMU's serial.c.

Transmission is instant: a byte written to THR goes to the backend at once, so
THR and the shift register always read empty (LSR 60h) and a guest polling
THRE never waits. Received bytes queue in the 16-byte FIFO (1 byte with FIFO
off); an overrun sets LSR bit 1. Interrupts follow the 16550's priorities
(line status, received data or character timeout, THR empty, modem status)
and reach the PIC only when MCR OUT2 is set, as on every PC. With the FIFO on,
four character times (at the programmed baud rate and frame, on the virtual
clock) after a byte arrived or was read with more left, data still in the FIFO
raise the character timeout (IIR 0Ch) until RBR is read, as in QEMU. Loopback (MCR
bit 4) feeds THR back to RBR and the modem outputs to the modem inputs.
Tests compare every register read-back with QEMU's 16550A (tests/test_serial_uart.py).

The backend (`nbdboot/console/serial.py`) fills `incoming` from its own
thread; `poll()`, called between slices, moves bytes into the FIFO and raises
the IRQ, so the CPU thread alone touches the registers.
"""

from __future__ import annotations

import collections
import math

FIFO_SIZE = 16
COM_PORTS = ((0x3F8, 4), (0x2F8, 3))  # (base, IRQ) of COM1 and COM2

LSR_DR, LSR_OE, LSR_THRE, LSR_TEMT = 0x01, 0x02, 0x20, 0x40
IIR_NONE, IIR_MSI, IIR_THRI, IIR_RDI, IIR_RLSI, IIR_CTI = 0x01, 0x00, 0x02, 0x04, 0x06, 0x0C
IER_RDI, IER_THRI, IER_RLSI, IER_MSI = 0x01, 0x02, 0x04, 0x08
MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
UART_CLOCK = 115200  # divisor 1 is 115200 baud


class Uart16550:
    def __init__(self, base: int, irq: int, pic, name: str = "COM1", clock=None):
        self.base = base
        self.irq = irq
        self.pic = pic
        self.clock = clock  # the machine's VirtualClock: times the character timeout
        self.name = name
        self.out = None  # callable(bytes) of the backend, or None: output is only collected
        self.output = bytearray()  # every byte the guest sent (for --expect)
        self.incoming: collections.deque[int] = collections.deque()  # from the backend's thread
        self.rx: collections.deque[int] = collections.deque()
        self.divisor = 12  # 9600 baud, as after SeaBIOS
        self.ier = 0
        self.lcr = 0x03
        self.mcr = 0
        self.lsr = LSR_THRE | LSR_TEMT
        self.msr_inputs = 0xB0  # DCD, DSR, CTS: a connected line
        self.msr_delta = 0
        self.scr = 0
        self.fcr = 0
        self.thr_pending = False  # a THR-empty interrupt is due (cleared by reading IIR or writing THR)
        self.timeout_pending = False
        self.timeout_at = math.inf  # virtual time the character timeout fires, if data is still there
        self._line = False  # the interrupt line's level last seen, to raise on its rising edge

    def attach(self, bus) -> None:
        bus.register(range(self.base, self.base + 8), self.read, self.write, self.name)

    # -- registers ---------------------------------------------------------------------
    def read(self, port: int) -> int:
        reg = port - self.base
        if reg == 0:
            if self.lcr & 0x80:
                return self.divisor & 0xFF
            value = self.rx.popleft() if self.rx else 0
            self.timeout_pending = False
            if not self.rx:
                self.lsr &= ~LSR_DR
            self._fill()
            if self.rx:
                self._arm_timeout()
            self._update()
            return value
        if reg == 1:
            return (self.divisor >> 8) if self.lcr & 0x80 else self.ier
        if reg == 2:
            self._check_timeout()
            iir = self._iir()
            if iir == IIR_THRI:
                self.thr_pending = False
            self._update()
            return iir | (0xC0 if self.fcr & 1 else 0)
        if reg == 3:
            return self.lcr
        if reg == 4:
            return self.mcr
        if reg == 5:
            self._fill()
            value = self.lsr
            self.lsr &= ~LSR_OE  # error bits clear on read
            self._update()
            return value
        if reg == 6:
            value = self._msr() | self.msr_delta
            self.msr_delta = 0
            self._update()
            return value
        return self.scr

    def write(self, port: int, value: int) -> None:
        reg = port - self.base
        if reg == 0:
            if self.lcr & 0x80:
                self.divisor = (self.divisor & 0xFF00) | value
                return
            if self.mcr & MCR_LOOP:
                self._receive(value)
            else:
                self.output.append(value)
                if self.out is not None:
                    self.out(bytes((value,)))
            self.thr_pending = True  # sent at once: THR is empty again
            self._update()
        elif reg == 1:
            if self.lcr & 0x80:
                self.divisor = (self.divisor & 0xFF) | (value << 8)
                return
            was = self.ier
            self.ier = value & 0x0F
            if self.ier & IER_THRI and not was & IER_THRI:
                self.thr_pending = True  # enabling THRI with THR empty interrupts at once (8250 and later)
            self._update()
        elif reg == 2:
            if (value ^ self.fcr) & 1:
                self.rx.clear()  # switching the FIFO on or off empties it
            if value & 0x02:
                self.rx.clear()
                self.lsr &= ~LSR_DR
                self.timeout_pending = False
                self.timeout_at = math.inf
            self.fcr = value & 0xC9
            self._fill()
            self._update()
        elif reg == 3:
            self.lcr = value
        elif reg == 4:
            # Loopback and leaving it change what MSR reads but set no delta bits, as in QEMU's model:
            # deltas come from the line (the backend), which never drops the modem signals.
            self.mcr = value & 0x1F
            self._update()
        elif reg == 7:
            self.scr = value
        # LSR and MSR writes are ignored (factory test registers)

    # -- state ---------------------------------------------------------------------------
    @property
    def baud(self) -> int:
        return UART_CLOCK // self.divisor if self.divisor else 0

    def _msr(self) -> int:
        if self.mcr & MCR_LOOP:
            m = self.mcr
            return ((m & MCR_RTS) << 3) | ((m & MCR_DTR) << 5) | ((m & MCR_OUT1) << 4) | ((m & MCR_OUT2) << 4)
        return self.msr_inputs

    def _capacity(self) -> int:
        return FIFO_SIZE if self.fcr & 1 else 1

    @property
    def char_time(self) -> float:
        """Seconds one character takes on the line: start bit, data, parity, stop bits at the baud rate."""
        lcr = self.lcr
        bits = 1 + 5 + (lcr & 3) + (1 if lcr & 0x08 else 0) + (2 if lcr & 0x04 else 1)
        return bits / self.baud if self.baud else math.inf

    def _arm_timeout(self) -> None:
        if self.fcr & 1 and self.clock is not None:
            self.timeout_at = self.clock.live() + 4 * self.char_time

    def _check_timeout(self) -> None:
        if self.timeout_at != math.inf and self.clock is not None and self.clock.live() >= self.timeout_at:
            self.timeout_at = math.inf
            if self.rx:
                self.timeout_pending = True

    def _receive(self, byte: int) -> None:
        if len(self.rx) >= self._capacity():
            self.lsr |= LSR_OE
            return
        self.rx.append(byte)
        self.lsr |= LSR_DR
        self._arm_timeout()

    def _fill(self) -> None:
        incoming = self.incoming
        if self.mcr & MCR_LOOP:
            return
        if not incoming or len(self.rx) >= self._capacity():
            return
        while incoming and len(self.rx) < self._capacity():
            self.rx.append(incoming.popleft())
        self.lsr |= LSR_DR
        self._arm_timeout()

    def _trigger(self) -> int:
        return (1, 4, 8, 14)[self.fcr >> 6] if self.fcr & 1 else 1

    def _iir(self) -> int:
        ier = self.ier
        if ier & IER_RLSI and self.lsr & LSR_OE:
            return IIR_RLSI
        if ier & IER_RDI and self.timeout_pending:
            return IIR_CTI  # ahead of the data interrupt, and masked with it, as QEMU (and real 16550s)
        if ier & IER_RDI and self.rx and len(self.rx) >= self._trigger():
            return IIR_RDI
        if ier & IER_THRI and self.thr_pending:
            return IIR_THRI
        if ier & IER_MSI and self.msr_delta:
            return IIR_MSI
        return IIR_NONE

    def _update(self) -> None:
        line = self._iir() != IIR_NONE and bool(self.mcr & MCR_OUT2)
        if line and not self._line:
            self.pic.raise_irq(self.irq)
        self._line = line

    def poll(self) -> None:
        """Between slices: take what the backend received and interrupt if the guest asked."""
        if self.incoming:
            self._fill()
        self._check_timeout()
        self._update()
