"""Our interrupt-delivery programs (bootimages/interrupts/) under nbdboot and under QEMU+SeaBIOS: same E9h log.

Each program is a floppy served by a real nbdkit; QEMU boots it from the same server. The log is the result: it
prints every return address, error code, CR2 and selector the CPU gave its handlers, so a difference in any of them
fails the comparison.
"""

from __future__ import annotations

import time

import pytest

from nbdboot.console.screen import screen_text
from nbdboot.disk.nbd import NbdDevice
from nbdboot.machine.machine import GuestCrash
from nbdboot.pc import PC
from nbdboot.nbd.uri import parse_uri
from support import qemuref
from support.images import image
from support.servers import running_nbdkit

# (image, end marker, key to press once this text is logged)
PROGRAMS = {
    "rmvectors": ("END rmvectors", None),
    "pmkernel": ("END pmkernel", "WAITKEY"),
    "ledblink": ("END ledblink", None),   # Linux's panic loop blinking the LEDs: ACKs, no reset
}
KEY_A = 0x1E61  # scan code 1Eh, 'a'


def nbdboot_log(uri: str, end: str, key_after: str | None, timeout: float = 30.0, keys: tuple[int, ...] = ()) -> str:
    """The program's E9h log up to the end of the line that starts with `end`; `keys` (BIOS key words) are typed
    once it first waits for a key."""
    end += "\n"  # the whole line: a slice can end between its last character and its newline
    machine = PC()
    with NbdDevice(parse_uri(uri)) as device:
        machine.bios.disk.add_drive(0x00, device)
        machine.power_on(0x00)
        machine.bios.keyboard.type_keys([("key", word) for word in keys])
        deadline = time.monotonic() + timeout
        pressed = False
        while end.encode() not in machine.debugcon.output and time.monotonic() < deadline:
            if key_after and not pressed and key_after.encode() in machine.debugcon.output:
                machine.bios.keyboard.type_keys([("key", KEY_A)], start_now=True)
                pressed = True
            try:
                machine.run_slice()
            except GuestCrash as crash:
                # Each program ends with `cli; hlt`, which ends the run at once (exit 4 "halted" from the CLI).
                if "halted" not in str(crash) or end.encode() not in machine.debugcon.output:
                    raise
    return machine.debugcon.output.decode(errors="replace")


def qemu_log(uri: str, end: str, key_after: str | None) -> str:
    result = qemuref.boot(uri, media="floppy", expect_debug=end + "\n", timeout=30, readonly=True,
                          keys_after=(key_after, ["a"]) if key_after else None)
    assert result.matched, result.debug
    return result.debug


@pytest.fixture(scope="module", params=sorted(PROGRAMS))
def both_logs(request):
    name = request.param
    end, key_after = PROGRAMS[name]
    with running_nbdkit("-r", "file", str(image(name))) as server:
        ours = nbdboot_log(server.uri, end, key_after)
        reference = qemu_log(server.uri, end, key_after)
    return name, ours, reference


def test_nbdboot_logs_what_qemu_logs(both_logs):
    name, ours, reference = both_logs
    assert f"END {name}" in reference
    assert ours == reference


def test_the_log_records_the_cpu_s_choices(both_logs):
    # The comparison is only as good as what the programs print: return addresses, error codes, CR2.
    name, ours, _ = both_logs
    if name == "rmvectors":
        assert "vector 6 return IP 7C36" in ours  # int 6 is an instruction, not #UD: IP after it
        assert "100/2 after #DE = 0032" in ours  # the fault restarted the div
    elif name == "ledblink":
        assert "ACKs 0028" in ours and ours.count("BEGIN") == 1  # 40 bytes, 40 ACKs, never rebooted
    else:
        assert "error code 00000007" in ours and "CR2 00300000" in ours  # user write, read-only page
        assert "error code 00000412" in ours  # int 82h through a DPL-0 gate: IDT bit, vector 82h
        assert "task B, TR=0030 back link=0028 NT=0001" in ours
        assert "back in task A, TR=0028 NT=0000" in ours





@pytest.fixture(scope="module")
def v86_boots(tmp_path_factory):
    """v86mon.asm boots the FreeDOS floppy inside V86 mode, under nbdboot and under QEMU+SeaBIOS."""
    from support.images import ROOT

    freedos = ROOT.parent / "shared" / "images" / "freedos722.img"
    if not freedos.exists():
        pytest.skip(f"{freedos} is not here")
    tmp = tmp_path_factory.mktemp("v86")
    copies = []
    for name in ("nbdboot", "qemu"):
        copy = tmp / f"freedos-{name}.img"
        copy.write_bytes(freedos.read_bytes())
        copies.append(copy)
    with running_nbdkit("-r", "file", str(image("v86mon"))) as monitor, \
            running_nbdkit("file", str(copies[0])) as floppy_a, running_nbdkit("file", str(copies[1])) as floppy_b:
        machine = PC()
        with NbdDevice(parse_uri(monitor.uri)) as disk, NbdDevice(parse_uri(floppy_a.uri)) as floppy:
            machine.bios.disk.add_drive(0x80, disk)
            machine.bios.disk.add_drive(0x00, floppy)
            machine.power_on(0x80)
            deadline = time.monotonic() + 90
            while "A:\\>" not in screen_text(machine.cpu) and time.monotonic() < deadline:
                machine.run_slice()
            # A slice can end while the monitor reflects an interrupt: DOS's prompt loop, idle between
            # keys, must be back in V86 mode within a few slices.
            modes = []
            for _ in range(20):
                modes.append(machine.cpu.mode())
                if modes[-1] == "virtual-8086 mode":
                    break
                machine.run_slice()
            ours = machine.debugcon.output.decode(errors="replace"), screen_text(machine.cpu), modes[-1]
        result = qemuref.boot(monitor.uri, "A:\\>", media="hdd", readonly=True, timeout=60,
                              extra_args=("-drive", f"file={floppy_b.uri},format=raw,if=floppy,index=0"))
    return ours, result


@pytest.mark.slow
def test_freedos_reaches_its_prompt_in_v86_mode_under_both(v86_boots):
    (log, screen, mode), reference = v86_boots
    assert reference.matched, reference.debug + reference.text()
    assert "A:\\>" in screen, log + screen
    assert mode == "virtual-8086 mode"  # DOS's prompt loop runs under the monitor
    assert "DOS is running in V86 mode" in log
    assert log == reference.debug


# rtcrate.asm counts the RTC's 1024 Hz periodic interrupts over 18 PIT ticks: 18 x 65536 / 1193182 s x 1024 Hz.
RTC_NOMINAL = 18 * 65536 / 1193182 * 1024


def _irq8_counts(log: str) -> dict[str, int]:
    return {line.rsplit(" ", 2)[-2].rstrip(":"): int(line.rsplit(" ", 1)[-1])
            for line in log.splitlines() if line.startswith("IRQ8s in 18 ticks")}


@pytest.fixture(scope="module")
def rtc_logs():
    with running_nbdkit("-r", "file", str(image("rtcrate"))) as server:
        return nbdboot_log(server.uri, "END rtcrate", None), qemu_log(server.uri, "END rtcrate", None)


def test_rtc_periodic_interrupts_come_at_their_rate(rtc_logs):
    ours, reference = rtc_logs
    qemu, nbdboot = _irq8_counts(reference), _irq8_counts(ours)
    assert set(qemu) == set(nbdboot) == {"idle", "busy"}, (ours, reference)
    # QEMU (TCG, host-clocked, on a loaded machine) drops some; it proves the program counts a second's worth.
    assert all(count > RTC_NOMINAL / 2 for count in qemu.values()), reference
    # nbdboot's RTC and PIT share the virtual clock: about 1012 either way, including a guest that computes
    # between its interrupts (no hlt: each IRQ8 must end the slice it falls in, not wait for the next one).
    for phase, count in nbdboot.items():
        assert abs(count - RTC_NOMINAL) < RTC_NOMINAL * 0.1, (phase, ours, reference)


def test_keyboard_intercept_under_both():
    # kbdhook.asm hooks int 15h AH=4Fh: A's make becomes B's, S's is dropped; typed a, s, d, shift-a.
    with running_nbdkit("-r", "file", str(image("kbdhook"))) as server:
        ours = nbdboot_log(server.uri, "END kbdhook", None, keys=(0x1E61, 0x1F73, 0x2064, 0x1E41))
        reference = qemuref.boot(server.uri, media="floppy", expect_debug="END kbdhook\n", timeout=30, readonly=True,
                                 keys=[("KEYS?", ["a"]), ("KEYS?", ["s"]), ("KEYS?", ["d"]),
                                       ("KEYS?", ["shift", "a"])])
    assert reference.matched, reference.debug
    assert "key 3062 flags 00\nkey 2064 flags 00\nkey 3042 flags 00\n" in ours
    assert ours == reference.debug
