"""The port bus: devices register their own ports; undecoded ports float; wide accesses split as on ISA."""

from __future__ import annotations

import pytest

from nbdboot.pc import PC
from nbdboot.machine.ports import PortBus


def test_an_undecoded_port_reads_all_ones_at_every_width_and_swallows_writes():
    bus = PortBus()
    bus.write(0x300, 4, 0x12345678)
    assert bus.read(0x300, 1) == 0xFF
    assert bus.read(0x300, 2) == 0xFFFF
    assert bus.read(0x300, 4) == 0xFFFFFFFF


def test_a_word_access_to_byte_ports_is_two_byte_accesses_in_order():
    bus = PortBus()
    seen = []
    store = {0x310: 0x34, 0x311: 0x12}
    bus.register((0x310, 0x311), store.__getitem__, lambda port, v: seen.append((port, v)), "test")
    assert bus.read(0x310, 2) == 0x1234
    assert bus.read(0x311, 2) == 0xFF12  # 312h floats
    bus.write(0x310, 2, 0xBEEF)
    assert seen == [(0x310, 0xEF), (0x311, 0xBE)]


def test_a_wide_device_sees_the_access_whole():
    bus = PortBus()
    log = []
    bus.register_wide((0xCFC,), lambda port, size: 0xAABBCCDD, lambda port, size, v: log.append((size, v)), "pci")
    assert bus.read(0xCFC, 4) == 0xAABBCCDD
    assert bus.read(0xCFC, 2) == 0xCCDD
    bus.write(0xCFC, 4, 0x80000000)
    assert log == [(4, 0x80000000)]


def test_two_devices_cannot_decode_one_port():
    bus = PortBus()
    bus.register((0x60,), lambda port: 0, None, "8042")
    with pytest.raises(ValueError, match="already decoded by 8042"):
        bus.register((0x60,), lambda port: 1, None, "mouse")


@pytest.mark.parametrize("port, owner", [
    (0x20, "8259 master"), (0xA1, "8259 slave"), (0x40, "8254"), (0x43, "8254"), (0x60, "8042"),
    (0x64, "8042"), (0x61, "port 61h"), (0x92, "port 92h"), (0x70, "cmos"), (0x71, "cmos"),
    (0x3D4, "vga"), (0x3DA, "vga"), (0xE9, "debugcon"),
])
def test_each_device_of_the_pc_registers_its_own_ports(port, owner):
    assert PC(memory_mb=1).ports.owner(port) == owner


def test_the_cmos_index_port_selects_the_register_the_data_port_reads():
    m = PC(memory_mb=1)
    m.ports.write(0x70, 1, 0x15)
    assert m.ports.read(0x71, 1) == 0x80  # base memory low byte: 640 KiB
    m.ports.write(0x70, 1, 0x80 | 0x16)   # bit 7 masks NMI, the index is the low 7 bits
    assert m.ports.read(0x71, 1) == 0x02
