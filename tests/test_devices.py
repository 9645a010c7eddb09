"""The chipset's devices through their ports, as a guest drives them (datasheet behaviour)."""

from __future__ import annotations

import pytest

from nbdboot.machine.devices.kbc import SET1_TO_SET2, key_codes
from nbdboot.machine.devices.pit import PIT_HZ
from nbdboot.pc import PC


@pytest.fixture
def m():
    return PC(memory_mb=1)


def inb(m, port):
    return m.ports.read(port, 1)


def outb(m, port, value):
    m.ports.write(port, 1, value)


# -- 8254 ------------------------------------------------------------------------------------
def test_pit_mode0_is_one_shot(m):
    outb(m, 0x43, 0x30)            # counter 0, lobyte/hibyte, mode 0
    assert m.pit.next_irq0(0.0) == float("inf")  # stopped until the count is written
    outb(m, 0x40, 0x00)
    outb(m, 0x40, 0x10)            # 4096
    first = m.pit.next_irq0(m.clock.now)
    assert first == pytest.approx(m.clock.now + 4096 / PIT_HZ)
    assert m.pit.next_irq0(first) == float("inf")  # never again until reprogrammed


def test_pit_mode2_and_mode3_are_periodic(m):
    for control in (0x34, 0x36):   # mode 2, mode 3
        outb(m, 0x43, control)
        outb(m, 0x40, 0x00)
        outb(m, 0x40, 0x10)
        t0 = m.pit.next_irq0(m.clock.now)
        assert m.pit.next_irq0(t0) == pytest.approx(t0 + 4096 / PIT_HZ)
        assert m.pit.next_irq0(t0 + 10 * 4096 / PIT_HZ) == pytest.approx(t0 + 11 * 4096 / PIT_HZ)


def test_pit_latch_and_read_back(m):
    m.clock.now = 1.0
    outb(m, 0x43, 0xB4)            # counter 2, lo/hi, mode 2
    outb(m, 0x42, 0x34)
    outb(m, 0x42, 0x12)
    outb(m, 0x61, 0x01)            # GATE2 high: counting
    m.clock.now = 1.0 + 100 / PIT_HZ
    outb(m, 0x43, 0x80)            # latch counter 2
    m.clock.now = 1.0 + 1000 / PIT_HZ  # the latched value does not move
    value = inb(m, 0x42) | inb(m, 0x42) << 8
    assert value == 0x1234 - 100
    outb(m, 0x43, 0xC8)            # read-back: count and status of counter 2
    status = inb(m, 0x42)
    assert status & 0x3F == 0x34   # lo/hi, mode 2, binary
    value = inb(m, 0x42) | inb(m, 0x42) << 8
    assert value == 0x1234 - 1000


def test_pit_counter2_gate_and_out_in_mode0(m):
    # GRUB's calibration: mode 0 on counter 2, GATE via port 61h bit 0, OUT in bit 5.
    outb(m, 0x61, 0x00)
    outb(m, 0x43, 0xB0)
    outb(m, 0x42, 0x00)
    outb(m, 0x42, 0x01)            # 256
    assert not inb(m, 0x61) & 0x20  # OUT low while counting
    m.clock.now = 5.0
    assert not inb(m, 0x61) & 0x20  # GATE low: not counting
    outb(m, 0x61, 0x01)
    m.clock.now = 5.0 + 300 / PIT_HZ
    assert inb(m, 0x61) & 0x20


# -- 8259 ------------------------------------------------------------------------------------
def remap(m, master=0x20, slave=0x28, icw4=0x01):
    for port, base, cascade in ((0x20, master, 0x04), (0xA0, slave, 0x02)):
        outb(m, port, 0x11)
        outb(m, port + 1, base)
        outb(m, port + 1, cascade)
        outb(m, port + 1, icw4)


def test_pic_remapped_bases_isr_irr_and_eoi(m):
    remap(m)
    assert inb(m, 0x21) == 0 and inb(m, 0xA1) == 0  # ICW1 clears the masks
    m.pic.raise_irq(1)
    m.pic.raise_irq(8)
    outb(m, 0x20, 0x0A)            # OCW3: read IRR
    assert inb(m, 0x20) == 0x02
    assert m.pic.pending() == 1
    assert m.pic.acknowledge(1) == 0x21
    outb(m, 0x20, 0x0B)            # read ISR
    assert inb(m, 0x20) == 0x02
    assert m.pic.pending() is None  # IRQ8 comes in on IRQ2: lower priority than IRQ1 in service
    outb(m, 0x20, 0x20)            # non-specific EOI: IRQ1
    assert inb(m, 0x20) == 0x00
    assert m.pic.pending() == 8
    assert m.pic.acknowledge(8) == 0x28
    assert inb(m, 0x20) == 0x04    # master: IRQ2 in service
    outb(m, 0xA0, 0x0B)
    assert inb(m, 0xA0) == 0x01    # slave: its line 0
    m.pic.raise_irq(0)
    assert m.pic.pending() == 0    # IRQ0 outranks IRQ2: nests
    outb(m, 0xA0, 0x60)            # specific EOI, slave line 0
    outb(m, 0x20, 0x62)            # specific EOI, master line 2
    assert inb(m, 0x20) == 0x00 and inb(m, 0xA0) == 0x00


def test_pic_masks_and_priority(m):
    remap(m)
    outb(m, 0x21, 0x01)            # mask IRQ0
    m.pic.raise_irq(0)
    assert m.pic.pending() is None
    m.pic.raise_irq(3)
    assert m.pic.pending() == 3
    m.pic.acknowledge(3)
    m.pic.raise_irq(5)
    assert m.pic.pending() is None  # lower priority than IRQ3 in service
    outb(m, 0x21, 0x00)
    assert m.pic.pending() == 0     # higher priority than IRQ3: nests


def test_pic_auto_eoi_and_spurious(m):
    remap(m, icw4=0x03)            # 8086 mode, auto-EOI
    m.pic.raise_irq(4)
    assert m.pic.acknowledge(4) == 0x24
    outb(m, 0x20, 0x0B)
    assert inb(m, 0x20) == 0x00    # nothing in service
    # A request gone before the acknowledge: the spurious IRQ7 vector, ISR untouched.
    assert m.pic.acknowledge() == 0x27
    assert inb(m, 0x20) == 0x00


def test_pic_poll_command(m):
    remap(m)
    m.pic.raise_irq(6)
    outb(m, 0x20, 0x0C)            # OCW3 poll
    assert inb(m, 0x20) == 0x86
    outb(m, 0x20, 0x0B)
    assert inb(m, 0x20) == 0x40


# -- RTC -------------------------------------------------------------------------------------
def cmos(m, index, value=None):
    outb(m, 0x70, index)
    if value is None:
        return inb(m, 0x71)
    outb(m, 0x71, value)


def test_rtc_periodic_interrupt_and_register_c(m):
    cmos(m, 0x0A, 0x2F)            # 2 Hz
    cmos(m, 0x0B, 0x42)            # PIE, 24 h, BCD
    assert m.cmos.next_irq8 == pytest.approx(0.5)
    m.clock.now = 0.5
    m._raise_due_irqs()
    assert m.pic.irr & 0x100
    c = cmos(m, 0x0C)
    assert c & 0xC0 == 0xC0        # IRQF and PF
    assert cmos(m, 0x0C) == 0      # reading C clears it
    assert m.cmos.next_irq8 == pytest.approx(1.0)


def test_rtc_update_ended_interrupt_and_binary_mode(m):
    cmos(m, 0x0B, 0x16)            # UIE, binary, 24 h
    when = m.cmos.next_irq8
    assert 0 < when <= 1.0
    m.clock.now = when + 1e-6
    m._raise_due_irqs()
    assert cmos(m, 0x0C) & 0x90 == 0x90
    seconds = cmos(m, 0x00)
    assert seconds < 60            # binary, not BCD
    hours = cmos(m, 0x04)
    assert hours < 24


def test_rtc_status_a_and_d(m):
    assert cmos(m, 0x0A) & 0x7F == 0x26
    assert cmos(m, 0x0D) == 0x80


def test_rtc_time_can_be_set(m):
    cmos(m, 0x0B, 0x06)            # binary
    cmos(m, 0x09, 99)
    assert cmos(m, 0x09) == 99
    assert m.cmos.now().tm_year % 100 == 99


# -- 8042 ------------------------------------------------------------------------------------
def test_kbc_reading_60h_empties_the_output_buffer(m):
    # OpenBSD's flush loop: read 60h while status bit 0 is set; it must end.
    outb(m, 0x64, 0xD2)
    outb(m, 0x60, 0x55)
    outb(m, 0x64, 0xD2)
    outb(m, 0x60, 0x66)
    read = []
    for _ in range(10):
        if not inb(m, 0x64) & 0x01:
            break
        read.append(inb(m, 0x60))
    assert read == [0x55, 0x66]
    assert not inb(m, 0x64) & 0x01
    assert inb(m, 0x60) == 0x66    # the data register keeps its last byte


def test_kbc_commands(m):
    def command(value):
        outb(m, 0x64, value)
        assert inb(m, 0x64) & 0x01
        return inb(m, 0x60)
    assert command(0xAA) == 0x55
    assert command(0xAB) == 0x00
    assert command(0xA9) == 0x00
    assert command(0x20) == 0x61   # translate, aux off, IRQ1: as SeaBIOS leaves it (QEMU)
    outb(m, 0x64, 0x60)
    outb(m, 0x60, 0x47)
    assert command(0x20) == 0x47
    assert command(0xD0) & 0x03 == 0x03  # A20 on, not in reset


def test_kbc_irq1_for_each_byte(m):
    outb(m, 0x60, 0xFF)            # keyboard reset: ACK, then self-test passed
    assert m.pic.irr & 0x02
    m.pic.acknowledge(1)           # the CPU takes IRQ1, its handler reads the byte
    assert inb(m, 0x60) == 0xFA
    outb(m, 0x20, 0x20)
    assert m.pic.irr & 0x02        # the next byte moved in and raised IRQ1 again
    assert inb(m, 0x60) == 0xAA
    outb(m, 0x60, 0xF2)            # identify, translated
    assert [inb(m, 0x60) for _ in range(3)] == [0xFA, 0xAB, 0x41]
    outb(m, 0x60, 0xEE)
    assert inb(m, 0x60) == 0xEE


def test_kbc_scan_code_set_translation(m):
    m.kbc.send_key(0x1E61)         # 'a'
    assert [inb(m, 0x60) for _ in range(2)] == [0x1E, 0x9E]
    outb(m, 0x64, 0x60)
    outb(m, 0x60, 0x05)            # translation off: the keyboard's set 2 codes
    m.kbc.send_key(0x1E41)         # 'A': shift around it
    got = []
    while inb(m, 0x64) & 0x01:
        got.append(inb(m, 0x60))
    assert got == [0x12, 0x1C, 0xF0, 0x1C, 0xF0, 0x12]
    assert key_codes(0x48E0)[0] == [0xE0, 0x48, 0xE0, 0xC8]  # grey up arrow
    assert SET1_TO_SET2[0x1C] == 0x5A


def test_kbc_reset_pulse_and_port_92h_reset_the_machine(m):
    outb(m, 0x64, 0xFE)
    assert m.reset_request and "8042" in m.reset_request[0]
    m.reset_request = None
    outb(m, 0x92, 0x01)
    assert m.reset_request and "92h" in m.reset_request[0]
    m.reset_request = None
    outb(m, 0xCF9, 0x06)
    assert m.reset_request and "CF9h" in m.reset_request[0]


def test_kbc_linux_panic_blink_sets_leds_and_nothing_else(m):
    # Linux's i8042_panic_blink, every 200 ms after a panic (panic=0): wait for IBF clear, ED to 60h, wait, the
    # LED byte (caps + scroll, then none) to 60h; the IRQ1 handler drops the two ACKs. Here once with the
    # handler reading them and a while with nobody reading (interrupts off): the PC must neither reset nor
    # touch A20, and the keyboard answers each byte with FAh.
    for reading in (True, False):
        for state in range(50):
            for value in (0xED, 0x05 if state & 1 else 0x00):
                assert not inb(m, 0x64) & 0x02   # IBF: the controller took the previous byte
                outb(m, 0x60, value)
                if reading:
                    assert inb(m, 0x60) == 0xFA
        assert m.reset_request is None
        assert m.kbc.output_port == 0x03 and m.kbc.command is None
    assert [inb(m, 0x60) for _ in range(4)] == [0xFA] * 4


# -- PS/2 mouse ------------------------------------------------------------------------------
def aux(m, value):
    outb(m, 0x64, 0xD4)
    outb(m, 0x60, value)


def drain(m):
    got = []
    while inb(m, 0x64) & 0x01:
        status = inb(m, 0x64)
        got.append((inb(m, 0x60), bool(status & 0x20)))
    return got


def test_mouse_reset_enable_and_packets(m):
    outb(m, 0x64, 0xA8)            # enable the aux port
    outb(m, 0x64, 0x60)
    outb(m, 0x60, 0x47)            # IRQ1 and IRQ12 on
    aux(m, 0xFF)
    assert drain(m) == [(0xFA, True), (0xAA, True), (0x00, True)]
    assert m.pic.irr & 0x1000
    aux(m, 0xF3)
    aux(m, 40)
    aux(m, 0xF2)
    assert drain(m) == [(0xFA, True), (0xFA, True), (0xFA, True), (0x00, True)]
    m.mouse.move(5, -3, 1)
    m.kbc.service()
    assert drain(m) == []          # reporting is off
    aux(m, 0xF4)
    assert drain(m) == [(0xFA, True)]
    m.mouse.move(5, -3, 1)
    m.kbc.service()
    assert [b for b, _ in drain(m)] == [0x08 | 0x01 | 0x20, 5, 0xFD]
    aux(m, 0xE9)                   # status request
    assert [b for b, _ in drain(m)] == [0xFA, 0x20 | 0x04, 2, 40]


def test_a_guest_polling_the_8042_gets_scripted_keys_in_set_2(tmp_path):
    # A kernel-style driver: keyboard IRQ off, translation off, polling the status port; --keys
    # start once it has polled for a while, and it reads make and break codes itself.
    from nbdboot.console.keys import parse_keys
    from nbdboot.debug.sectors import run_sector
    body = r"""
        cli
        mov al, 60h
        out 64h, al
        mov al, 04h                 ; command byte: no IRQs, no translation
        out 60h, al
        mov cx, 3
next:   in al, 64h
        test al, 1
        jz next
        in al, 60h
        xor ah, ah
        HEX16 ax
        loop next
        PRINT " DONE"
        sti
        hlt
"""
    machine, out = run_sector(tmp_path, body, keys=parse_keys("a"))
    assert out == "001C00F0001C DONE", out
    assert machine.irq_count[1] == 0


def test_uart_character_timeout_after_four_character_times(m):
    """With the FIFO on and fewer bytes than the trigger level, IIR says 0Ch (and IRQ4 rises) exactly four
    character times after the last byte came in or was read with more left: 10 bits at 9600 baud, 8N1."""
    uart, clock = m.serial[0], m.clock
    m.pic.master.imr = 0
    for reg, value in ((3, 0x80), (0, 12), (1, 0), (3, 0x03), (2, 0x87), (1, 0x01), (4, 0x08)):
        uart.write(0x3F8 + reg, value)
    assert uart.char_time == pytest.approx(10 / 9600)
    four = 4 * uart.char_time
    start = clock.now
    uart.incoming.extend(b"abc")
    uart.poll()
    assert uart.read(0x3FA) == 0xC1 and m.pic.pending() is None
    assert uart.timeout_at == pytest.approx(start + four) and m.next_event() <= uart.timeout_at
    clock.skip_to(start + four * 0.99)
    uart.poll()
    assert uart.read(0x3FA) == 0xC1
    clock.skip_to(start + four)
    uart.poll()
    assert m.pic.pending() == 4
    assert uart.read(0x3FA) == 0xCC
    assert uart.read(0x3F8) == ord("a")              # reading clears it and starts four more characters
    assert uart.read(0x3FA) == 0xC1
    clock.skip_to(start + 2 * four)
    uart.poll()
    assert uart.read(0x3FA) == 0xCC
    uart.read(0x3F8), uart.read(0x3F8)
    clock.skip_to(start + 4 * four)
    uart.poll()
    assert uart.read(0x3FA) == 0xC1                  # empty: no timeout
    uart.write(0x3FB, 0x0A)                          # 7 data bits, parity, 1 stop bit: 10 bits again
    assert uart.char_time == pytest.approx(10 / 9600)
    uart.write(0x3FB, 0x07)                          # 8 data bits, 2 stop bits: 11
    assert uart.char_time == pytest.approx(11 / 9600)


def test_mouse_splits_long_moves_into_packets_as_qemu(m):
    outb(m, 0x64, 0xA8)
    outb(m, 0x64, 0x60)
    outb(m, 0x60, 0x47)
    aux(m, 0xF4)
    assert drain(m) == [(0xFA, True)]
    m.mouse.move(-300, 130, 0)
    m.kbc.service()
    assert [b for b, _ in drain(m)] == [0x18, 0x81, 0x7F, 0x18, 0x81, 0x03, 0x18, 0xD2, 0x00]
