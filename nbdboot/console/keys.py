"""Keystrokes as the BIOS sees them: (scan code << 8) | ASCII, US layout.

`parse_keys` turns the `--keys` language into keyboard items:
text is typed as is; \\n \\r \\t \\e \\\\ are Enter, Enter, Tab, Esc, backslash;
{enter} {esc} {tab} {bksp} {space} {up} {down} {left} {right} {home} {end}
{pgup} {pgdn} {ins} {del} {f1}..{f12} {ctrl-X} name keys; {pause:SECONDS}
waits; {{ and }} are literal braces.

Pointer items drive the PS/2 mouse: {mouse-move:DX,DY} (DY > 0 is down, as on the
screen and in QEMU's `mouse_move`), {mouse-down:BUTTON}, {mouse-up:BUTTON},
{mouse-click:BUTTON} (down, then up) with BUTTON left, right or middle. They
become ("mouse", (dx, dy, press, release)) items: one PS/2 packet each.
"""

from __future__ import annotations

from nbdboot.errors import UsageError
from nbdboot.machine.devices.kbc import CTRL_BREAK

_ROWS = [
    (0x02, "1234567890-=", "!@#$%^&*()_+"),
    (0x10, "qwertyuiop[]", "QWERTYUIOP{}"),
    (0x1E, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
    (0x2B, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
]

ASCII_KEYS: dict[str, int] = {}
for _scan, _plain, _shifted in _ROWS:
    for _i, (_p, _s) in enumerate(zip(_plain, _shifted)):
        ASCII_KEYS[_p] = ((_scan + _i) << 8) | ord(_p)
        ASCII_KEYS[_s] = ((_scan + _i) << 8) | ord(_s)
ASCII_KEYS[" "] = 0x3920
ASCII_KEYS["\r"] = ASCII_KEYS["\n"] = 0x1C0D
ASCII_KEYS["\t"] = 0x0F09
ASCII_KEYS["\b"] = 0x0E08
ASCII_KEYS["\x1b"] = 0x011B

NAMED_KEYS = {
    "enter": 0x1C0D, "esc": 0x011B, "tab": 0x0F09, "bksp": 0x0E08, "backspace": 0x0E08,
    "space": 0x3920, "up": 0x4800, "down": 0x5000, "left": 0x4B00, "right": 0x4D00,
    "home": 0x4700, "end": 0x4F00, "pgup": 0x4900, "pgdn": 0x5100, "ins": 0x5200, "del": 0x5300,
}
for _n in range(1, 11):
    NAMED_KEYS[f"f{_n}"] = (0x3A + _n) << 8
NAMED_KEYS["f11"], NAMED_KEYS["f12"] = 0x8500, 0x8600
for _c in "abcdefghijklmnopqrstuvwxyz":
    NAMED_KEYS[f"ctrl-{_c}"] = (ASCII_KEYS[_c] & 0xFF00) | (ord(_c) - 0x60)
# Ctrl-Break has no key word of its own: the BIOS stores 0000h for it (and calls int 1Bh), so that word
# stands for the key in the queue (machine/devices/kbc.py types its scan codes).
NAMED_KEYS["ctrl-break"] = CTRL_BREAK

MOUSE_BUTTONS = {"left": 1, "right": 2, "middle": 4}  # PS/2 packet bits
# A packet carries at most +-127 per axis as QEMU's ps2.c sends it (a longer move becomes several packets).
MOUSE_STEP = 127
MAX_MOUSE_MOVE = 10000

_ESCAPES = {"n": "\r", "r": "\r", "t": "\t", "e": "\x1b", "\\": "\\", "b": "\b"}


def parse_keys(text: str) -> list[tuple[str, float | int]]:
    items: list[tuple[str, float | int]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            esc = _ESCAPES.get(text[i + 1])
            if esc is None:
                raise UsageError(f"--keys: unknown escape \\{text[i + 1]}")
            items.append(("key", ASCII_KEYS[esc]))
            i += 2
            continue
        if ch == "{":
            if text.startswith("{{", i):
                items.append(("key", ASCII_KEYS["{"]))
                i += 2
                continue
            end = text.find("}", i)
            if end < 0:
                raise UsageError("--keys: '{' without '}'")
            name = text[i + 1:end].strip().lower()
            if name.startswith("pause:"):
                try:
                    seconds = float(name[6:])
                except ValueError:
                    raise UsageError(f"--keys: bad pause {{{name}}}") from None
                if not 0 <= seconds <= 3600:
                    raise UsageError(f"--keys: pause out of range {{{name}}}")
                items.append(("pause", seconds))
            elif name.startswith("mouse-"):
                items.extend(_mouse_items(name))
            elif name in NAMED_KEYS:
                items.append(("key", NAMED_KEYS[name]))
            else:
                raise UsageError(f"--keys: unknown key {{{name}}}")
            i = end + 1
            continue
        if text.startswith("}}", i):
            items.append(("key", ASCII_KEYS["}"]))
            i += 2
            continue
        word = ASCII_KEYS.get(ch)
        if word is None:
            raise UsageError(f"--keys: cannot type {ch!r} on a US keyboard")
        items.append(("key", word))
        i += 1
    return items


def _mouse_items(name: str) -> list[tuple[str, tuple[int, int, int, int]]]:
    """{mouse-move:DX,DY}, {mouse-down:B}, {mouse-up:B}, {mouse-click:B} as mouse items
    (dx, dy with dy > 0 down, buttons pressed, buttons released)."""
    action, _, argument = name.partition(":")
    if action == "mouse-move":
        parts = argument.split(",")
        try:
            dx, dy = (int(part) for part in parts)
        except ValueError:
            raise UsageError(f"--keys: {{{name}}}: give the move as {{mouse-move:DX,DY}} in pixels") from None
        if not (abs(dx) <= MAX_MOUSE_MOVE and abs(dy) <= MAX_MOUSE_MOVE):
            raise UsageError(f"--keys: {{{name}}}: a move is at most {MAX_MOUSE_MOVE} pixels on each axis")
        items = []
        while True:
            step_x = max(-MOUSE_STEP, min(MOUSE_STEP, dx))
            step_y = max(-MOUSE_STEP, min(MOUSE_STEP, dy))
            items.append(("mouse", (step_x, step_y, 0, 0)))
            dx, dy = dx - step_x, dy - step_y
            if not (dx or dy):
                return items
    if action in ("mouse-down", "mouse-up", "mouse-click"):
        button = MOUSE_BUTTONS.get(argument.strip())
        if button is None:
            raise UsageError(f"--keys: {{{name}}}: the button is left, right or middle")
        down, up = ("mouse", (0, 0, button, 0)), ("mouse", (0, 0, 0, button))
        return {"mouse-down": [down], "mouse-up": [up], "mouse-click": [down, up]}[action]
    raise UsageError(f"--keys: unknown pointer item {{{name}}} (mouse-move, mouse-down, mouse-up, mouse-click)")


_TERMINAL_SEQUENCES = {
    "[A": "up", "[B": "down", "[C": "right", "[D": "left", "[H": "home", "[F": "end",
    "[2~": "ins", "[3~": "del", "[5~": "pgup", "[6~": "pgdn",
    "OP": "f1", "OQ": "f2", "OR": "f3", "OS": "f4", "[15~": "f5", "[17~": "f6", "[18~": "f7",
    "[19~": "f8", "[20~": "f9", "[21~": "f10", "[23~": "f11", "[24~": "f12",
}


def terminal_keys(data: str) -> list[tuple[str, int]]:
    """Keys from raw terminal input (ANSI escape sequences for arrows and F-keys)."""
    items = []
    i = 0
    while i < len(data):
        if data[i] == "\x1b" and i + 1 < len(data) and data[i + 1] in "[O":
            for seq, name in _TERMINAL_SEQUENCES.items():
                if data.startswith(seq, i + 1):
                    items.append(("key", NAMED_KEYS[name]))
                    i += 1 + len(seq)
                    break
            else:
                items.append(("key", ASCII_KEYS["\x1b"]))
                i += 1
            continue
        ch = data[i]
        if ch == "\x7f":
            ch = "\b"
        if ch == "\n":
            ch = "\r"
        word = ASCII_KEYS.get(ch)
        if word is None and 1 <= ord(ch) <= 26:
            word = NAMED_KEYS[f"ctrl-{chr(ord(ch) + 0x60)}"]
        if word is not None:
            items.append(("key", word))
        i += 1
    return items


def keys_help() -> str:
    """The --keys language in one paragraph, built from the tables the parser uses."""
    letters = {f"ctrl-{c}" for c in "abcdefghijklmnopqrstuvwxyz"}
    plain = [n for n in NAMED_KEYS if n not in letters and not (n[0] == "f" and n[1:].isdigit())]
    fkeys = sorted(int(n[1:]) for n in NAMED_KEYS if n[0] == "f" and n[1:].isdigit())
    ctrl = sorted(n[5:] for n in NAMED_KEYS if n in letters)
    escapes = " ".join("\\" + e for e in _ESCAPES)
    return (f"text as typed on a US keyboard; escapes {escapes}; keys "
            + " ".join("{" + n + "}" for n in plain)
            + f" {{f{fkeys[0]}}}..{{f{fkeys[-1]}}} {{ctrl-{ctrl[0]}}}..{{ctrl-{ctrl[-1]}}}"
            + "; {pause:SECONDS} waits; {{ and }} are braces; the PS/2 mouse: {mouse-move:DX,DY} (pixels, DY > 0 down), "
            "{mouse-down:B} {mouse-up:B} {mouse-click:B} (B: left, right, middle), once the guest has enabled it")
