"""int 19h and int 18h run alone on a POSTed machine (bios_bench): the hand-off registers of a boot, and the
run's end when there is nothing to boot."""

from __future__ import annotations

import pytest

from nbdboot.disk.file import FileDevice
from nbdboot.errors import BootFailed
from support.bios_bench import call, check, machine_at_rest

BOOT_SECTOR = b"\xfa\xf4".ljust(510, b"\x90") + b"\x55\xaa"


@pytest.fixture
def disk(tmp_path):
    def make(first_sector: bytes):
        path = tmp_path / "disk.img"
        path.write_bytes(first_sector.ljust(1024 * 1024, b"\0"))
        device = FileDevice(path)
        return device
    return make


def boot_machine(device, number: int):
    return machine_at_rest(number, lambda m: m.bios.disk.add_firmware_drive(number, device))


@pytest.mark.parametrize("number", [0x80, 0x00])
def test_int19_enters_the_boot_sector_with_dl_the_drive(disk, number):
    device = disk(BOOT_SECTOR)
    machine = boot_machine(device, number)
    state = call(machine, machine.bios.boot.int19, dict(ax=0x1234, bx=0x5678, si=0x9ABC, es=0x1000, ds=0x2000))
    check(machine, state, dict(eax=0, ebx=0, ecx=0, edx=number, si=0, di=0, bp=0, ds=0, es=0, eip=0x7C00,
                               **{"mem:7c00+200": BOOT_SECTOR}))
    cpu = machine.cpu
    assert (cpu.get("cs"), cpu.get("ss"), cpu.get("esp"), cpu.get("eflags") & 0xFFFF) == (0, 0, 0x7C00, 0x0202)
    assert machine.failure is None
    device.close()


def test_int19_without_a_boot_signature_ends_the_run(disk):
    device = disk(b"\x90" * 512)
    machine = boot_machine(device, 0x80)
    call(machine, machine.bios.boot.int19, {})
    assert isinstance(machine.failure, BootFailed) and "55AA" in str(machine.failure)
    device.close()


def test_int18_ends_the_run():
    machine = machine_at_rest()
    call(machine, machine.bios.boot.int18, {})
    assert isinstance(machine.failure, BootFailed) and "int 18h" in str(machine.failure)
