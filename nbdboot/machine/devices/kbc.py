"""The 8042 keyboard controller (data port 60h, status/command port 64h), the PS/2
keyboard on its first port and the PS/2 mouse on its auxiliary port.

As the 8042 and QEMU's pckbd.c/ps2.c behave: one output buffer, filled from the
keyboard's and the mouse's queues when it is empty; reading port 60h empties it
(status bit 0 clears; bit 5 says the byte came from the mouse) and the next queued
byte moves in, raising IRQ1 or IRQ12 if the command byte enables them. The
interface disable bits hold back the devices' bytes only: the controller's own
output (command replies, D2h/D3h bytes) comes first and always, as Linux's AUX
port probe (D3h loopback with the port disabled) expects. Reading 60h
with nothing new returns the last byte again. The command byte (20h/60h),
self-test (AAh -> 55h), interface tests (ABh, A9h -> 00h), keyboard and aux
enable/disable (ADh/AEh, A7h/A8h), output port (D0h/D1h: bit 1 gates A20, bit 0
low resets the PC), DDh/DFh (A20 off/on), D2h/D3h/D4h and the pulse commands (FEh resets the PC) are decoded. The
keyboard answers its own commands (reset, identify, LEDs, typematic, scan code
set, enable/disable) and sends set 2 codes, which the controller translates to
set 1 while command byte bit 6 is set (the PC default).

Keys come from the BIOS keyboard module as BIOS key words; `send_key()` turns a
word into make and break codes (with shift or ctrl around it when the character
needs one) and remembers the word with its make code: reading that byte from
port 60h leaves the word in `last_word`, so the ROM's IRQ1 path puts exactly the
word typed in the BDA ring, whoever else read the byte first.
"""

from __future__ import annotations

import collections

from nbdboot.machine.devices.mouse import Ps2Mouse

# The BIOS's word for Ctrl-Break (int 16h reads 0000h), which also names the key in a key queue.
CTRL_BREAK = 0x0000

STATUS_OBF = 0x01
STATUS_SYS = 0x04
STATUS_CMD = 0x08
STATUS_UNLOCKED = 0x10
STATUS_AUX = 0x20

CB_KBD_IRQ = 0x01
CB_AUX_IRQ = 0x02
CB_SYS = 0x04
CB_KBD_OFF = 0x10
CB_AUX_OFF = 0x20
CB_TRANSLATE = 0x40

# Empty status reads, with no key sent since, after which a guest polling the controller is waiting for a key.
POLLS_FOR_KEY = 2000

LSHIFT, LCTRL = 0x2A, 0x1D

# Set 1 make code -> set 2 make code (the keyboard's own codes; the 8042 translates back).
SET1_TO_SET2 = {
    0x01: 0x76, 0x02: 0x16, 0x03: 0x1E, 0x04: 0x26, 0x05: 0x25, 0x06: 0x2E, 0x07: 0x36, 0x08: 0x3D,
    0x09: 0x3E, 0x0A: 0x46, 0x0B: 0x45, 0x0C: 0x4E, 0x0D: 0x55, 0x0E: 0x66, 0x0F: 0x0D, 0x10: 0x15,
    0x11: 0x1D, 0x12: 0x24, 0x13: 0x2D, 0x14: 0x2C, 0x15: 0x35, 0x16: 0x3C, 0x17: 0x43, 0x18: 0x44,
    0x19: 0x4D, 0x1A: 0x54, 0x1B: 0x5B, 0x1C: 0x5A, 0x1D: 0x14, 0x1E: 0x1C, 0x1F: 0x1B, 0x20: 0x23,
    0x21: 0x2B, 0x22: 0x34, 0x23: 0x33, 0x24: 0x3B, 0x25: 0x42, 0x26: 0x4B, 0x27: 0x4C, 0x28: 0x52,
    0x29: 0x0E, 0x2A: 0x12, 0x2B: 0x5D, 0x2C: 0x1A, 0x2D: 0x22, 0x2E: 0x21, 0x2F: 0x2A, 0x30: 0x32,
    0x31: 0x31, 0x32: 0x3A, 0x33: 0x41, 0x34: 0x49, 0x35: 0x4A, 0x36: 0x59, 0x37: 0x7C, 0x38: 0x11,
    0x39: 0x29, 0x3A: 0x58, 0x3B: 0x05, 0x3C: 0x06, 0x3D: 0x04, 0x3E: 0x0C, 0x3F: 0x03, 0x40: 0x0B,
    0x41: 0x83, 0x42: 0x0A, 0x43: 0x01, 0x44: 0x09, 0x45: 0x77, 0x46: 0x7E, 0x47: 0x6C, 0x48: 0x75,
    0x49: 0x7D, 0x4A: 0x7B, 0x4B: 0x6B, 0x4C: 0x73, 0x4D: 0x74, 0x4E: 0x79, 0x4F: 0x69, 0x50: 0x72,
    0x51: 0x7A, 0x52: 0x70, 0x53: 0x71, 0x56: 0x61, 0x57: 0x78, 0x58: 0x07,
}

# BIOS scan codes of keys with modifiers -> (set 1 make code of the key, modifier make code or None)
_SHIFTED = set('~!@#$%^&*()_+{}|:"<>?') | {chr(c) for c in range(ord("A"), ord("Z") + 1)}
_EXTENDED = {0x47, 0x48, 0x49, 0x4B, 0x4D, 0x4F, 0x50, 0x51, 0x52, 0x53}  # grey cursor block (ASCII E0h)
_BIOS_F11_F12 = {0x85: 0x57, 0x86: 0x58}


def key_codes(word: int) -> tuple[list[int], int | None]:
    """Set 1 bytes (make ... break) for a BIOS key word, and the index of the byte that carries the key."""
    if word == CTRL_BREAK:
        # Ctrl held, then Pause/Break's Ctrl form (E0 46 make, E0 C6 break); the key is the E0 46.
        return [LCTRL, 0xE0, 0x46, 0xE0, 0xC6, LCTRL | 0x80], 2
    scan, ascii_ = word >> 8, word & 0xFF
    scan = _BIOS_F11_F12.get(scan, scan)
    if scan == 0 or scan > 0x58:
        return [], None
    prefix = [0xE0] if ascii_ == 0xE0 and scan in _EXTENDED else []
    modifier = None
    if ascii_ and chr(ascii_) in _SHIFTED:
        modifier = LSHIFT
    elif 1 <= ascii_ <= 26 and scan not in (0x0E, 0x0F, 0x1C, 0x01):  # ctrl-letter, not BS/Tab/Enter/Esc
        modifier = LCTRL
    make = prefix + [scan]
    brk = prefix + [scan | 0x80]
    if modifier is None:
        return make + brk, len(make) - 1
    return [modifier] + make + brk + [modifier | 0x80], len(make)


def to_set2(codes: list[int]) -> list[int]:
    out = []
    for b in codes:
        if b == 0xE0:
            out.append(0xE0)
        elif b & 0x80:
            out += [0xF0, SET1_TO_SET2.get(b & 0x7F, 0)]
        else:
            out.append(SET1_TO_SET2.get(b, 0))
    return out


class Ps2Keyboard:
    """The keyboard's side of the PS/2 protocol: command replies and scanning state."""

    def __init__(self, kbc):
        self.kbc = kbc
        self.scanning = True
        self.scancode_set = 2
        self.awaiting: int | None = None  # a command that takes an argument byte
        self.last_sent = 0xFA

    def reply(self, *data: int) -> None:
        for b in data:
            self.kbc.queue_kbd(b, None)
        if data:
            self.last_sent = data[-1]

    def write(self, value: int) -> None:
        if self.awaiting is not None:
            command, self.awaiting = self.awaiting, None
            if command == 0xF0:
                if value == 0:
                    set_id = self.scancode_set
                    if self.kbc.command_byte & CB_TRANSLATE:
                        set_id = {1: 0x43, 2: 0x41, 3: 0x3F}[set_id]
                    self.reply(0xFA, set_id)
                    return
                if value in (1, 2, 3):
                    self.scancode_set = value
                self.reply(0xFA)
                return
            if value < 0x80:  # the LED or typematic argument; a command byte starts a new command
                self.reply(0xFA)
                return
        if value == 0xFF:
            self.scanning, self.scancode_set = True, 2
            self.kbc.kbd_queue.clear()
            self.reply(0xFA, 0xAA)
        elif value == 0xFE:
            self.reply(self.last_sent)
        elif value in (0xED, 0xF3, 0xF0):
            self.awaiting = value
            self.reply(0xFA)
        elif value == 0xEE:
            self.reply(0xEE)
        elif value == 0xF2:
            self.reply(0xFA, 0xAB, 0x41 if self.kbc.command_byte & CB_TRANSLATE else 0x83)
        elif value == 0xF4:
            self.scanning = True
            self.reply(0xFA)
        elif value == 0xF5:
            self.scanning = False
            self.reply(0xFA)
        elif value == 0xF6:
            self.scanning, self.scancode_set = True, 2
            self.reply(0xFA)
        elif value in (0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD):
            self.reply(0xFA)
        else:
            self.reply(0xFE)


class Keyboard8042:
    def __init__(self, machine=None):
        self.m = machine
        self.kbd_queue: collections.deque = collections.deque()  # (byte, BIOS word or None)
        self.aux_queue: collections.deque = collections.deque()
        # The controller's own output (command replies, D2h/D3h bytes) as (byte, as from aux): it reaches the
        # buffer whatever the interface disable bits say, which only stop the devices' clocks.
        self.ctrl_queue: collections.deque = collections.deque()
        self.obf: tuple[int, bool, int | None] | None = None  # (byte, from aux, BIOS word)
        self.obf_from_controller = False
        self.last = 0
        self.last_word: int | None = None
        self.command: int | None = None   # controller command waiting for its data byte
        self.last_was_command = False
        self.output_port = 0x03  # A20 on, not in reset
        self.command_byte = CB_TRANSLATE | CB_AUX_OFF | CB_KBD_IRQ  # 61h, as SeaBIOS leaves it
        self.system_flag = True  # POST's self-test passed
        self.keyboard = Ps2Keyboard(self)
        self.mouse = Ps2Mouse(self)
        self.empty_polls = 0

    def attach(self, bus) -> None:
        bus.register((0x60,), lambda port: self.read_data(), lambda port, v: self.write_data(v), "8042")
        bus.register((0x64,), lambda port: self.status(), lambda port, v: self.write_command(v), "8042")

    # -- the output buffer -------------------------------------------------------------
    def queue_kbd(self, byte: int, word: int | None) -> None:
        self.kbd_queue.append((byte & 0xFF, word))
        self._fill()

    def queue_aux(self, byte: int) -> None:
        self.aux_queue.append(byte & 0xFF)
        self._fill()

    def _reply(self, byte: int) -> None:
        """A controller reply: it goes ahead of the devices' bytes."""
        self.ctrl_queue.append((byte & 0xFF, False))
        if self.obf is not None and not self.obf[1] and not self.obf_from_controller:
            # the buffer holds a keyboard byte: the reply takes its place, the byte waits
            self.kbd_queue.appendleft((self.obf[0], self.obf[2]))
            self.obf = None
        self._fill()

    def _fill(self) -> None:
        if self.obf is not None:
            return
        cb = self.command_byte
        if self.ctrl_queue:
            byte, aux = self.ctrl_queue.popleft()
            self.obf, self.obf_from_controller = (byte, aux, None), True
            if self.m is not None:
                if aux and cb & CB_AUX_IRQ:
                    self.m.pic.raise_irq(12)
                elif not aux and cb & CB_KBD_IRQ and not cb & CB_KBD_OFF:
                    self.m.pic.raise_irq(1)
            return
        self.obf_from_controller = False
        if self.kbd_queue and not cb & CB_KBD_OFF:
            byte, word = self.kbd_queue.popleft()
            self.obf = (byte, False, word)
            if cb & CB_KBD_IRQ and self.m is not None:
                self.m.pic.raise_irq(1)
        elif self.aux_queue and not cb & CB_AUX_OFF:
            self.obf = (self.aux_queue.popleft(), True, None)
            if cb & CB_AUX_IRQ and self.m is not None:
                self.m.pic.raise_irq(12)

    def service(self) -> None:
        """Between slices: mouse moves from other threads, bytes waiting for an empty buffer."""
        self.mouse.service()
        self._fill()

    def holding_key(self) -> bool:
        """A key is on its way: bytes queued or in the buffer."""
        return bool(self.kbd_queue) or (self.obf is not None and not self.obf[1])

    def send_key(self, word: int) -> bool:
        """Type the key of a BIOS key word (make and break codes); False if it has no scan code."""
        codes, key_at = key_codes(word)
        if not codes:
            codes, key_at = [(word >> 8) & 0x7F], 0  # a scan code we cannot type: its make code alone
            codes.append(codes[0] | 0x80)
        if not self.keyboard.scanning:
            return False
        translate = self.command_byte & CB_TRANSLATE or self.keyboard.scancode_set == 1
        for i, b in enumerate(codes):
            carried = word if i == key_at else None
            for out in ([b] if translate else to_set2([b])):
                self.kbd_queue.append((out, carried))
                carried = None
        self.empty_polls = 0
        self._fill()
        return True

    # -- ports ---------------------------------------------------------------------------
    def status(self) -> int:
        obf = self.obf
        value = STATUS_UNLOCKED | (STATUS_SYS if self.system_flag else 0) | (STATUS_CMD if self.last_was_command else 0)
        if obf is None:
            self.empty_polls += 1
            if self.empty_polls == POLLS_FOR_KEY and self.m is not None:
                self.m.bios.keyboard.guest_waiting()  # a guest reading the controller directly waits for keys
            return value
        return value | STATUS_OBF | (STATUS_AUX if obf[1] else 0)

    def read_data(self) -> int:
        obf = self.obf
        if obf is None:
            return self.last
        self.obf = None
        self.last = obf[0]
        if not obf[1]:
            self.last_word = obf[2]
        self._fill()
        return self.last

    def holds(self, aux: bool) -> bool:
        """The output buffer is full with a byte from the mouse (aux) or from the keyboard/controller."""
        return self.obf is not None and self.obf[1] == aux

    def write_command(self, value: int) -> None:
        self.last_was_command = True
        self.command = None
        if 0x20 <= value <= 0x3F:
            self._reply(self.command_byte if value == 0x20 else 0)
        elif 0x60 <= value <= 0x7F or value in (0xD1, 0xD2, 0xD3, 0xD4):
            self.command = value
        elif value == 0xA7:
            self.command_byte |= CB_AUX_OFF
        elif value == 0xA8:
            self.command_byte &= ~CB_AUX_OFF
            self._fill()
        elif value in (0xA9, 0xAB):
            self._reply(0x00)
        elif value == 0xAA:
            self.system_flag = True
            self._reply(0x55)
        elif value == 0xAD:
            self.command_byte |= CB_KBD_OFF
        elif value == 0xAE:
            self.command_byte &= ~CB_KBD_OFF
            self._fill()
        elif value == 0xC0:
            self._reply(0xBF)  # input port: keyboard not inhibited, 512K+ board
        elif value == 0xD0:
            obf = 0x10 if self.obf and not self.obf[1] else 0
            aux = 0x20 if self.obf and self.obf[1] else 0
            self._reply((self.output_port & 0xCF) | obf | aux)
        elif value == 0xE0:
            self._reply(0x00)
        elif value in (0xDD, 0xDF):  # HP-style A20 off / on
            self._write_output_port((self.output_port & ~0x02) | (value & 0x02))
        elif value >= 0xF0:
            if not value & 0x01:
                self._reset("the 8042 pulsed the reset line (out 64h, %02Xh)" % value)

    def write_data(self, value: int) -> None:
        self.last_was_command = False
        command, self.command = self.command, None
        if command is None:
            self.keyboard.write(value)
        elif command == 0x60:
            self.command_byte = value
            self.system_flag = bool(value & CB_SYS) or self.system_flag
            self._fill()
        elif 0x61 <= command <= 0x7F:
            pass  # controller RAM nobody reads back
        elif command == 0xD1:
            self._write_output_port(value)
        elif command in (0xD2, 0xD3):  # write the output buffer as if the keyboard / the mouse sent it
            self.ctrl_queue.append((value & 0xFF, command == 0xD3))
            self._fill()
        elif command == 0xD4:
            self.mouse.write(value)

    def _write_output_port(self, value: int) -> None:
        """Bit 1 is the A20 gate, bit 0 low holds the CPU in reset."""
        self.output_port = value
        if self.m is not None:
            self.m.cpu.set_a20(bool(value & 0x02))
        if not value & 0x01:
            self._reset("the 8042 output port's reset bit went low (command D1h)")

    def _reset(self, reason: str) -> None:
        if self.m is not None:
            self.m.request_reset(reason)
