"""int 16h and int 1Ah functions run alone against a POSTed machine's registers (bios_bench): one table row per
call, entry registers -> exit registers, CF/ZF and BDA fields. Rows run in order on one machine (a key stored,
then peeked, then read)."""

from __future__ import annotations

import time

import pytest

from bios_bench import call, check, machine_at_rest, opposite_flags

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
    ("12 extended shift flags", {"kbd_flag0": 0x23, "kbd_flag1": 0x45}, dict(ax=0x1200), dict(ax=0x4523)),
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
