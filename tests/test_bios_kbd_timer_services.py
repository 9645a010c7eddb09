"""int 16h and int 1Ah functions run alone against a POSTed machine's registers (bios_bench): one table row per
call, entry registers -> exit registers, CF/ZF and BDA fields. Rows run in order on one machine (a key stored,
then peeked, then read)."""

from __future__ import annotations

import time

import pytest

from support.bios_bench import call, check, machine_at_rest, opposite_flags

# 2026-12-03 14:05:09 local time: the RTC's time at rest (the virtual clock starts at 0)
RTC_EPOCH = time.mktime((2026, 12, 3, 14, 5, 9, 0, 0, -1))
STUB_IP = 0x0102  # where the stub's `iret` sits; a waiting read rewinds to its `int 16h`


@pytest.fixture(scope="module")
def machine():
    machine = machine_at_rest()
    machine.clock.wall_epoch = RTC_EPOCH
    return machine


# (id, BDA fields set before, entry registers, expected exit)
KEYBOARD = [
    ("01 empty ring", {}, dict(ax=0x0100), dict(ax=0x0100, zf=1)),
    ("05 store Enter", {}, dict(ax=0x0500, cx=0x1C0D), dict(ax=0x0500, cx=0x1C0D)),
    ("11 sees Enter", {}, dict(ax=0x1100), dict(ax=0x1C0D, zf=0)),
    ("00 reads Enter", {}, dict(ax=0x0000), dict(ax=0x1C0D)),
    ("01 empty again", {}, dict(ax=0x0100, bx=0x1234), dict(ax=0x0100, bx=0x1234, zf=1)),
    ("05 store grey Up", {}, dict(ax=0x0500, cx=0x48E0), dict(ax=0x0500)),
    ("10 keeps E0", {}, dict(ax=0x1000), dict(ax=0x48E0)),
    ("05 store grey Up again", {}, dict(ax=0x0500, cx=0x48E0), dict(ax=0x0500)),
    ("00 turns E0 into 00", {}, dict(ax=0x0000), dict(ax=0x4800)),
    ("00 on an empty ring waits", {}, dict(ax=0x0000, eip=STUB_IP), dict(ax=0x0000, eip=STUB_IP - 2)),
    ("02 shift flags", {"kbd_flag0": 0x23, "kbd_flag1": 0x45}, dict(ax=0x0200), dict(ax=0x0223)),
    ("12 extended shift flags", {"kbd_flag0": 0x23, "kbd_flag1": 0x45, "kbd_flag2": 0x10}, dict(ax=0x1200),
     dict(ax=0x4123)),
    ("12 right ctrl and alt from 40:96", {"kbd_flag0": 0x0C, "kbd_flag1": 0x00, "kbd_flag2": 0x1C}, dict(ax=0x1200),
     dict(ax=0x0C0C)),
    ("7F does nothing", {}, dict(ax=0x7F00, cx=0x1111), dict(ax=0x7F00, cx=0x1111)),
]


@pytest.mark.parametrize("bda, entry, expected", [row[1:] for row in KEYBOARD], ids=[row[0] for row in KEYBOARD])
@pytest.mark.parametrize("flags", [0x0002, 0x0043])
def test_int16_function(machine, bda, entry, expected, flags):
    for name, value in bda.items():
        setattr(machine.bios.keyboard.bda, name, value)
    zf = expected.get("zf")
    state = call(machine, machine.bios.keyboard.int16, entry, flags=flags)
    check(machine, state, dict(expected, cf=flags & 1))  # int 16h never writes CF
    if zf is None:
        assert state["flags"] & 0x40 == flags & 0x40  # nor ZF, but for 01h/11h


def test_int16_store_reports_a_full_ring(machine):
    keyboard = machine.bios.keyboard
    while keyboard._pop() is not None:
        pass
    results = [call(machine, keyboard.int16, dict(ax=0x0500, cx=0x1E61 + n))["al"] for n in range(16)]
    assert results == [0] * 15 + [1]  # 16 slots, one always free
    assert call(machine, keyboard.int16, dict(ax=0x0000))["ax"] == 0x1E61


# The ROM's IRQ1 path after int 15h AH=4Fh: the trap takes the scan code in AL (SeaBIOS's __process_key).
# (id, bytes in order, expected 40:17h/40:18h/40:96h after the last, the key it puts in the ring or None)
IRQ1 = [
    ("left shift down", [0x2A], (0x02, 0x00, 0x10), None),
    ("a with shift", [0x1E, 0x9E], (0x02, 0x00, 0x10), 0x1E41),
    ("left shift up", [0xAA], (0x00, 0x00, 0x10), None),
    ("caps lock toggles on", [0x3A], (0x40, 0x40, 0x10), None),
    ("caps lock up", [0xBA], (0x40, 0x00, 0x10), None),
    ("a with caps lock", [0x1E, 0x9E], (0x40, 0x00, 0x10), 0x1E41),
    ("shift undoes caps lock", [0x36, 0x1E, 0x9E, 0xB6], (0x40, 0x00, 0x10), 0x1E61),
    ("caps lock toggles off", [0x3A, 0xBA], (0x00, 0x00, 0x10), None),
    ("1 is not a letter", [0x3A, 0x02, 0x82, 0x3A, 0xBA], (0x00, 0x00, 0x10), 0x0231),
    ("left ctrl down", [0x1D], (0x04, 0x01, 0x10), None),
    ("ctrl-c", [0x2E, 0xAE], (0x04, 0x01, 0x10), 0x2E03),
    ("left ctrl up", [0x9D], (0x00, 0x00, 0x10), None),
    ("right ctrl down (E0 1D)", [0xE0, 0x1D], (0x04, 0x00, 0x14), None),
    ("right ctrl up", [0xE0, 0x9D], (0x00, 0x00, 0x10), None),
    ("alt-F1", [0x38, 0x3B, 0xBB, 0xB8], (0x00, 0x00, 0x10), 0x6800),
    ("right alt down (E0 38)", [0xE0, 0x38], (0x08, 0x00, 0x18), None),
    ("right alt up", [0xE0, 0xB8], (0x00, 0x00, 0x10), None),
    ("grey up arrow", [0xE0, 0x48, 0xE0, 0xC8], (0x00, 0x00, 0x10), 0x48E0),
    ("num lock on", [0x45, 0xC5], (0x20, 0x00, 0x10), None),
    ("keypad 8 with num lock", [0x48, 0xC8], (0x20, 0x00, 0x10), 0x4838),
    ("grey up ignores num lock", [0xE0, 0x48, 0xE0, 0xC8], (0x20, 0x00, 0x10), 0x48E0),
    ("num lock off", [0x45, 0xC5], (0x00, 0x00, 0x10), None),
    ("keypad 8 without", [0x48, 0xC8], (0x00, 0x00, 0x10), 0x4800),
    ("scroll lock on, held", [0x46], (0x10, 0x10, 0x10), None),
    ("scroll lock up", [0xC6], (0x10, 0x00, 0x10), None),
    ("pause (E1 1D 45 E1 9D C5) changes nothing", [0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5], (0x10, 0x00, 0x10), None),
    ("scroll lock off", [0x46, 0xC6], (0x00, 0x00, 0x10), None),
    ("keypad Enter", [0xE0, 0x1C, 0xE0, 0x9C], (0x00, 0x00, 0x10), 0x1C0D),
    ("a key with no word for ctrl", [0x1D, 0x02, 0x82, 0x9D], (0x00, 0x00, 0x10), None),
]


@pytest.fixture(scope="module")
def irq1_machine():
    return machine_at_rest()


@pytest.mark.parametrize("codes, flags, key", [row[1:] for row in IRQ1], ids=[row[0] for row in IRQ1])
def test_irq1_scan_code(irq1_machine, codes, flags, key):
    keyboard = irq1_machine.bios.keyboard
    for code in codes:
        call(irq1_machine, keyboard.irq1, dict(al=code))
    check(irq1_machine, {}, {"bda.kbd_flag0": flags[0], "bda.kbd_flag1": flags[1], "bda.kbd_flag2": flags[2]})
    state = call(irq1_machine, keyboard.int16, dict(ax=0x1100))
    if key is None:
        check(irq1_machine, state, dict(zf=1))
    else:
        check(irq1_machine, state, dict(ax=key, zf=0))
        assert call(irq1_machine, keyboard.int16, dict(ax=0x1000))["ax"] == key


def test_ctrl_alt_del_resets_the_machine(irq1_machine):
    keyboard = irq1_machine.bios.keyboard
    for code in (0x1D, 0x38, 0x53):
        call(irq1_machine, keyboard.irq1, dict(al=code))
    assert irq1_machine.reset_request[0] == "Ctrl-Alt-Del"
    check(irq1_machine, {}, {"bda.soft_reset_flag": 0x1234})


TIMER = [
    ("01 set ticks", {"timer_rollover": 1}, dict(ax=0x0100, cx=0x0012, dx=0x3456),
     dict(ah=0x01, cf=0, **{"bda.timer_counter": 0x123456, "bda.timer_rollover": 0})),
    ("00 read ticks", {"timer_rollover": 1}, dict(ax=0x0000),
     dict(ax=0x0001, cx=0x0012, dx=0x3456, cf=0, **{"bda.timer_rollover": 0})),
    ("00 read ticks, no midnight", {}, dict(ax=0x00FF), dict(ax=0x0000, cx=0x0012, dx=0x3456, cf=0)),
    ("02 RTC time", {}, dict(ax=0x0200), dict(ah=0x02, cx=0x1405, dx=0x0900, cf=0)),
    ("04 RTC date", {}, dict(ax=0x0400), dict(ah=0x04, cx=0x2026, dx=0x1203, cf=0)),
    ("03 set RTC time", {}, dict(ax=0x0300, cx=0x0102, dx=0x0300), dict(ax=0x0300, cx=0x0102, cf=0)),
    ("07 reset alarm", {}, dict(ax=0x0700), dict(ah=0x07, cf=0)),
    ("08 is not a function", {}, dict(ax=0x0800), dict(ah=0x86, cf=1)),
    ("BB00 no TPM", {}, dict(eax=0xBB00), dict(eax=0x8600, cf=1)),
]


@pytest.mark.parametrize("bda, entry, expected", [row[1:] for row in TIMER], ids=[row[0] for row in TIMER])
def test_int1a_function(machine, bda, entry, expected):
    for name, value in bda.items():
        setattr(machine.bios.timer.bda, name, value)
    state = call(machine, machine.bios.timer.int1a, entry, flags=opposite_flags(expected))
    check(machine, state, expected)
