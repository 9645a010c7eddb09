"""The PS/2 mouse on the 8042's auxiliary port (QEMU ps2.c, the PS/2 mouse protocol).

Commands (through the 8042's D4h): reset (FFh -> FAh AAh 00h), defaults, enable
and disable data reporting, sample rate, resolution, scaling, status request,
read data, stream/remote/wrap modes, identify (a plain 3-byte mouse: ID 00h).
Movement reaches the guest as 3-byte packets: buttons and signs, X, Y (up is
positive) when reporting is enabled in stream mode; as in QEMU, a packet carries
at most +-127 on each axis and a longer move follows in further packets.

`move(dx, dy, buttons)` may be called from any thread (a VNC server's): moves
are queued and become packets between slices.
"""

from __future__ import annotations

import collections

BUTTON_LEFT, BUTTON_RIGHT, BUTTON_MIDDLE = 1, 2, 4
MAX_QUEUED_BYTES = 48  # bytes waiting in the 8042 beyond which moves are merged


class Ps2Mouse:
    def __init__(self, kbc):
        self.kbc = kbc
        self._moves: collections.deque = collections.deque()
        self.defaults()
        self.awaiting: int | None = None
        self.wrap = False
        self.remote = False
        self.dx = self.dy = 0
        self.buttons = 0
        self.held = 0  # the buttons as the last move() left them (the packets may not have caught up)

    def defaults(self) -> None:
        self.reporting = False
        self.sample_rate = 100
        self.resolution = 2
        self.scaling21 = False

    # -- any thread --------------------------------------------------------------------
    def move(self, dx: int, dy: int, buttons: int = 0) -> None:
        """The mouse moved by (dx, dy) (dy > 0 is up) with `buttons` (bit 0 left, 1 right, 2 middle) down."""
        self.held = int(buttons) & 7
        self._moves.append((int(dx), int(dy), self.held))

    # -- the CPU thread ------------------------------------------------------------------
    @property
    def listening(self) -> bool:
        """The guest takes motion: data reporting on in stream mode, or remote mode (it polls)."""
        return self.reporting or self.remote

    def idle(self) -> bool:
        """No move waiting and no mouse byte on its way to the guest: a new move makes a packet of its own."""
        kbc = self.kbc
        return not self._moves and not kbc.aux_queue and not (kbc.obf is not None and kbc.obf[1])

    def scripted(self, dx: int, dy: int, press: int, release: int) -> None:
        """A --keys pointer item: move by (dx, dy) (dy > 0 down, as on the screen), press and release buttons."""
        self.move(dx, -dy, (self.held | press) & ~release)
        self.service()

    def service(self) -> None:
        while self._moves:
            dx, dy, buttons = self._moves.popleft()
            changed = buttons != self.buttons
            self.buttons = buttons
            if not (self.reporting or self.remote):
                continue  # stream mode with reporting off: the mouse drops motion
            self.dx += dx
            self.dy += dy
            if self.reporting and not self.remote and (changed or self.dx or self.dy):
                # as QEMU's ps2.c: a move beyond +-127 goes out as several packets while the queue has room
                while len(self.kbc.aux_queue) < MAX_QUEUED_BYTES:
                    self.send_packet()
                    if not (self.dx or self.dy):
                        break
                # else the guest is not reading: the motion left waits for a later packet

    def _packet(self) -> list[int]:
        dx, dy = max(-127, min(127, self.dx)), max(-127, min(127, self.dy))
        self.dx -= dx
        self.dy -= dy
        first = 0x08 | self.buttons | (0x10 if dx < 0 else 0) | (0x20 if dy < 0 else 0)
        return [first, dx & 0xFF, dy & 0xFF]

    def send_packet(self) -> None:
        for b in self._packet():
            self.kbc.queue_aux(b)

    def reply(self, *data: int) -> None:
        for b in data:
            self.kbc.queue_aux(b)

    def write(self, value: int) -> None:
        """A byte the guest sent to the mouse (8042 command D4h)."""
        if self.awaiting is not None:
            command, self.awaiting = self.awaiting, None
            if command == 0xF3:
                self.sample_rate = value
            elif command == 0xE8:
                self.resolution = value & 3
            self.reply(0xFA)
            return
        if self.wrap and value not in (0xEC, 0xFF):
            self.reply(value)
            return
        if value == 0xFF:
            self.defaults()
            self.wrap = self.remote = False
            self.kbc.aux_queue.clear()
            self.reply(0xFA, 0xAA, 0x00)
        elif value == 0xFE:
            self.reply(0xFA)
        elif value in (0xF3, 0xE8):
            self.awaiting = value
            self.reply(0xFA)
        elif value == 0xF2:
            self.reply(0xFA, 0x00)
        elif value == 0xF4:
            self.reporting = True
            self.reply(0xFA)
        elif value == 0xF5:
            self.reporting = False
            self.reply(0xFA)
        elif value == 0xF6:
            self.defaults()
            self.reply(0xFA)
        elif value == 0xE6:
            self.scaling21 = False
            self.reply(0xFA)
        elif value == 0xE7:
            self.scaling21 = True
            self.reply(0xFA)
        elif value == 0xE9:
            status = (0x40 if self.remote else 0) | (0x20 if self.reporting else 0) \
                | (0x10 if self.scaling21 else 0) | (self.buttons & 1) << 2 | (self.buttons & 4) >> 1 \
                | (self.buttons & 2) >> 1
            self.reply(0xFA, status, self.resolution, self.sample_rate)
        elif value == 0xEA:
            self.remote = False
            self.reply(0xFA)
        elif value == 0xF0:
            self.remote = True
            self.reply(0xFA)
        elif value == 0xEB:
            self.reply(0xFA, *self._packet())
        elif value == 0xEE:
            self.wrap = True
            self.reply(0xFA)
        elif value == 0xEC:
            self.wrap = False
            self.reply(0xFA)
        else:
            self.reply(0xFE)
