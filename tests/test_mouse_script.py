"""Scripted pointer items (--keys {mouse-move:DX,DY}, {mouse-down/up/click:BUTTON}) reach a guest's PS/2 mouse
as QEMU's do: bootimages/mouse.asm turns the mouse on through the 8042 (aux port, IRQ12, D4h F4h) or through
int 15h C2xxh as a DOS mouse driver does, and prints every packet; nbdboot's packets are compared with the
bytes of the PS/2 protocol and with QEMU's for the same events (QMP input-send-event)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nbdboot
from support import qemuref
from support.servers import require_tool

ROOT = Path(__file__).resolve().parent.parent

# (--keys text, the same as QMP input events: one list per packet-making event)
STEPS = [
    ("{mouse-move:10,5}", [[("rel", "x", 10), ("rel", "y", 5)]]),
    ("{mouse-click:left}", [[("btn", "left", True)], [("btn", "left", False)]]),
    ("{mouse-move:-300,0}", [[("rel", "x", -300)]]),               # more than a packet holds: three
    ("{mouse-down:right}", [[("btn", "right", True)]]),
    ("{mouse-move:1,-1}", [[("rel", "x", 1), ("rel", "y", -1)]]),   # dragging with the right button
    ("{mouse-up:right}", [[("btn", "right", False)]]),
    ("{mouse-click:middle}", [[("btn", "middle", True)], [("btn", "middle", False)]]),
]
KEYS = "".join(keys for keys, _ in STEPS)
# The PS/2 packets: status (bit 3 always, 4/5 X/Y negative, 0-2 left/right/middle), X, Y (up is positive).
PACKETS = [
    "28 0A FB",                          # 10 right, 5 down
    "09 00 00", "08 00 00",              # left down, up
    "18 81 00", "18 81 00", "18 D2 00",  # 300 left: -127, -127, -46
    "0A 00 00",                          # right down
    "0A 01 01",                          # 1 right, 1 up, right held
    "08 00 00",                          # right up
    "0C 00 00", "08 00 00",              # middle down, up
]
EXPECTED = "".join(f"P{n}:{packet}\r\n" for n, packet in enumerate(PACKETS, 1))


def build(tmp_path, bios_mouse: bool) -> Path:
    require_tool("nasm")
    image = tmp_path / ("bios-mouse.img" if bios_mouse else "mouse.img")
    subprocess.run(["nasm", "-f", "bin", *(["-DBIOS_MOUSE"] if bios_mouse else []), "-o", str(image),
                    str(ROOT / "bootimages" / "mouse.asm")], check=True)
    with open(image, "r+b") as f:
        f.truncate(1440 * 1024)
    return image


def packets(output: str) -> str:
    return output[output.index("READY\r\n") + 7:]


def qemu_packets(image: Path) -> str:
    """QEMU's packets for STEPS: each event once the guest has printed the packets of the one before."""
    actions, packets_before = [], 0
    for _, events in STEPS:
        for event in events:
            commands = []
            for kind, what, value in event:
                if kind == "rel":
                    commands.append({"type": "rel", "data": {"axis": what, "value": value}})
                else:
                    commands.append({"type": "btn", "data": {"button": what, "down": value}})
            actions.append((lambda debug, n=packets_before: "READY" in debug and debug.count("\n") - 1 >= n,
                            [("input-send-event", {"events": commands})]))
            packets_before += 3 if event == [("rel", "x", -300)] else 1
    # The whole last line: the E9h log is read while QEMU may be half-way through writing it.
    last_line = f"P{len(PACKETS)}:{PACKETS[-1]}\r\n"
    reference = qemuref.boot(str(image), None, media="floppy", expect_debug=last_line, timeout=30,
                             debug_actions=actions)
    assert reference.matched, reference.debug
    return packets(reference.debug)


def test_keys_pointer_items_through_the_8042_match_qemu(tmp_path):
    image = build(tmp_path, bios_mouse=False)
    run = subprocess.run(
        [sys.executable, "-m", "nbdboot", "run", "--image", str(image), "--headless", "--timeout", "20",
         "--keys", KEYS, "--expect", f"P{len(PACKETS)}:{PACKETS[-1]}"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    screen = run.stdout.split("---- screen ----")[-1]
    lines = [line.strip() for line in screen.splitlines() if line.startswith("P")]
    assert lines == [f"P{n}:{packet}" for n, packet in enumerate(PACKETS, 1)], screen
    assert qemu_packets(image).startswith(EXPECTED)


def test_api_type_pointer_items_through_int15_c2_match_qemu(tmp_path):
    image = build(tmp_path, bios_mouse=True)
    with nbdboot.boot(image=str(image)) as pc:
        pc.wait_for("READY", timeout=20)
        pc.type(KEYS)
        pc.wait_for(f"P{len(PACKETS)}:{PACKETS[-1]}", timeout=20)
        ours = packets(pc.machine.debugcon.output.decode())
    assert ours == EXPECTED
    assert qemu_packets(image).startswith(EXPECTED)


def test_pointer_items_wait_for_the_guest_to_enable_its_mouse(tmp_path):
    """Typed before the guest turns the mouse on, the items are not lost: they flow once it listens."""
    image = build(tmp_path, bios_mouse=False)
    with nbdboot.boot(image=str(image), keys="{mouse-move:10,5}") as pc:
        pc.wait_for("P1:28 0A FB", timeout=20)


@pytest.mark.parametrize("keys, message", [
    ("{mouse-move:10}", "give the move as {mouse-move:DX,DY}"),
    ("{mouse-move:a,b}", "give the move as {mouse-move:DX,DY}"),
    ("{mouse-move:20000,0}", "a move is at most 10000 pixels"),
    ("{mouse-click:thumb}", "the button is left, right or middle"),
    ("{mouse-wheel:1}", "unknown pointer item {mouse-wheel:1}"),
])
def test_bad_pointer_items_are_usage_errors(tmp_path, keys, message):
    image = build(tmp_path, bios_mouse=False)
    run = subprocess.run([sys.executable, "-m", "nbdboot", "run", "--image", str(image), "--headless",
                          "--keys", keys], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


INIT_ORDER = r"""
        push cs
        pop es
        mov bx, 7C00h
        mov ax, 0C207h              ; a handler, then initialize: the handler is forgotten
        int 15h
        mov ax, 0C205h
        mov bh, 3
        int 15h
        mov ax, 0C200h
        mov bh, 1
        int 15h
        pushf
        HEX16 ax
        pop ax
        and ax, 1
        HEX16 ax
        mov ax, 0C205h              ; only 3-byte packets
        mov bh, 4
        int 15h
        pushf
        HEX16 ax
        pop ax
        and ax, 1
        HEX16 ax
        PRINT " DONE"
        cli
        hlt
"""


def test_int15_c205_forgets_the_handler_as_seabios(tmp_path):
    from nbdboot.debug.sectors import assemble, run_sector
    image = assemble(tmp_path, INIT_ORDER)
    disk = tmp_path / "floppy.img"
    disk.write_bytes(image + bytes(1440 * 1024 - len(image)))
    reference = qemuref.boot(str(disk), None, media="floppy", expect_debug="DONE", timeout=30)
    assert reference.matched, reference.debug
    _, ours = run_sector(tmp_path, INIT_ORDER)
    assert ours == reference.debug.strip()
    assert ours.startswith("05"), ours    # C200h: AH 05h (no handler), CF set


def test_help_names_every_pointer_item():
    from nbdboot.console.keys import keys_help, parse_keys
    text = keys_help()
    for item in ("{mouse-move:DX,DY}", "{mouse-down:B}", "{mouse-up:B}", "{mouse-click:B}"):
        assert item in text
    assert parse_keys("{mouse-move:300,-5}{mouse-click:right}") == [
        ("mouse", (127, -5, 0, 0)), ("mouse", (127, 0, 0, 0)), ("mouse", (46, 0, 0, 0)),
        ("mouse", (0, 0, 2, 0)), ("mouse", (0, 0, 0, 2))]
