"""Keyboard: scripted or live keys -> IRQ1 -> int 09h -> BDA ring -> int 16h.

Keys enter the guest the way a real keyboard's do: the 8042 gets the key's make
and break codes (machine/devices/kbc.py) and raises IRQ1 for each byte; the ROM's
int 09h path (a trap) reads port 60h and moves the key into the BDA ring at 41Eh,
and int 16h serves from that ring. A guest that hooks int 09h, peeks the ring or
reads the controller itself sees ordinary behaviour.

Scripted keys are held until the guest first waits for a key (a blocking int
16h read): typed earlier, they would be eaten by boot-time "press a key"
checks. A blocking read with an empty ring parks the CPU (the stub's `int 16h`
is re-executed after wake-up) and the machine skips time to the next event.

int 16h has no status and leaves CF alone (as SeaBIOS's handle_16): its
functions return None, and only 01h/11h, whose answer is ZF, write the caller's
FLAGS. Each docstring is the function's register contract.
"""

from __future__ import annotations

import collections

from nbdboot.bios.bda import Bda
from nbdboot.machine.cpu import FLAG_IF, FLAG_ZF
from nbdboot.machine.devices.kbc import CTRL_BREAK
from nbdboot.machine.memmap import BDA

# A guest that has idled polling the keyboard this long (virtual seconds) is
# reading it, not just checking for a boot-time hotkey (FreeDOS waits 2 s for F5/F8).
POLLING_READS_AFTER = 2.5

# Idle polls (int 16h 01h on an empty ring, interrupts on) within one timer tick
# before the machine treats the guest as idle and skips to the next tick.
IDLE_POLLS_PER_TICK = 8


class Keyboard:
    def __init__(self, machine):
        self.m = machine
        self.bda = Bda(machine.cpu)
        self.queue: collections.deque = collections.deque()  # ("key", word) | ("pause", s) | ("mouse", move)
        self.active = False       # scripted keys flow once the guest has waited for one
        self.next_time = 0.0
        self.polls = 0
        self.reads = 0
        self.functions = {
            0x00: self.read, 0x10: self.read, 0x01: self.peek, 0x11: self.peek,
            0x02: self.shift_flags, 0x12: self.shift_flags_extended, 0x05: self.store,
        }

    # -- input side ------------------------------------------------------------------
    def type_keys(self, items, start_now: bool = False) -> None:
        """Queue ("key", scan<<8|ascii), ("pause", seconds) and ("mouse", (dx, dy, press, release)) items."""
        self.queue.extend(items)
        if start_now:
            self.active = True

    def next_key_time(self) -> float:
        if self.active and self.queue:
            if self.queue[0][0] == "mouse" and not (self.m.mouse.listening and self.m.mouse.idle()):
                return float("inf")  # it waits for the guest, which must run to turn the mouse on or read it
            return max(self.next_time, self.m.clock.now)
        return float("inf")

    def guest_waiting(self) -> None:
        """The guest is waiting for input (blocking read, DOS idle call): scripted keys may flow."""
        self.active = True

    def feed(self) -> None:
        """Called between slices: start the next due key on its way (IRQ1)."""
        clock = self.m.clock
        if not self.active and self.m.idle_since is not None and clock.now - self.m.idle_since >= POLLING_READS_AFTER:
            self.active = True
        mouse = self.m.mouse
        if not self.active and self.queue and mouse.listening:
            self.active = True  # a guest that turns its mouse on takes input
        if not self.active or self.m.kbc.holding_key():
            return
        while self.queue and self.queue[0][0] == "pause":
            if clock.now < self.next_time:
                return
            self.next_time = clock.now + self.queue.popleft()[1]
        if not self.queue or clock.now < self.next_time:
            return
        kind, value = self.queue[0]
        if kind == "mouse":
            # one packet per item, once the guest listens and has taken the previous packet
            if mouse.listening and mouse.idle():
                self.queue.popleft()
                mouse.scripted(*value)
            return
        if self._ring_full():
            return
        self.queue.popleft()
        self.m.kbc.send_key(value)

    # -- BDA ring ------------------------------------------------------------------------
    def _ring(self):
        bda = self.bda
        return bda.kbd_buf_head, bda.kbd_buf_tail, bda.kbd_buf_start_offset, bda.kbd_buf_end_offset

    def _ring_full(self) -> bool:
        head, tail, start, end = self._ring()
        nxt = tail + 2 if tail + 2 < end else start
        return nxt == head

    def push(self, word: int) -> bool:
        head, tail, start, end = self._ring()
        nxt = tail + 2 if tail + 2 < end else start
        if nxt == head:
            return False
        self.m.cpu.write16(BDA + tail, word, code=False)
        self.bda.kbd_buf_tail = nxt
        return True

    def _pop(self) -> int | None:
        head, tail, start, end = self._ring()
        if head == tail:
            return None
        word = self.m.cpu.read16(BDA + head)
        self.bda.kbd_buf_head = head + 2 if head + 2 < end else start
        return word

    # -- IRQ1 path -----------------------------------------------------------------------
    def irq1(self) -> None:
        """The ROM's int 09h: read the byte from port 60h; a key's make code brings its word to the ring.
        As SeaBIOS's handle_09, a byte only when the status says the buffer holds one from the keyboard: an IRQ1
        left pending while the guest polled the 8042 itself must not take a mouse byte."""
        if not self.m.kbc.holds(aux=False):
            return
        word = self.m.kbc.take_key_word()
        if word == CTRL_BREAK:
            self._ctrl_break()
        elif word is not None:
            self.push(word)

    def _ctrl_break(self) -> None:
        """As a PC BIOS's int 09h does for Ctrl-Break: empty the ring, store 0000h, set the break flag
        (40:71 bit 7) and call int 1Bh, whose handler (DOS's) notes the break; it returns into this IRQ path."""
        bda = self.bda
        bda.kbd_buf_head = bda.kbd_buf_tail
        self.push(CTRL_BREAK)
        bda.break_flag = bda.break_flag | 0x80
        cpu = self.m.cpu
        cpu.deliver_real(0x1B, cpu.get("eip"), running=True)

    # -- int 16h -----------------------------------------------------------------------
    def int16(self) -> None:
        """The dispatcher: the function for AH; other AH values return with no register changed."""
        handler = self.functions.get(self.m.cpu.get("ah"))
        if handler:
            handler()

    def read(self) -> None:
        """INT 16,00/10 - Read a key. Return: AX = the key (AH scan code, AL character); 00h gives E0h
        extended keys with AL 00h. With the ring empty the call waits: the stub's `int` is re-executed after
        the CPU idles until an IRQ (and scripted keys start flowing)."""
        word = self._pop()
        if word is None:
            self.guest_waiting()
            self.reads += 1
            self.m.wait_in_bios(rewind=2)
            return
        if self.m.cpu.get("ah") == 0x00 and (word & 0xFF) == 0xE0:
            word &= 0xFF00
        self.m.cpu.set("ax", word)

    def peek(self) -> None:
        """INT 16,01/11 - Check for a key. Return: ZF clear and AX = the next key, left in the ring; ZF set
        when it is empty (interrupts are let in, and a guest that keeps polling idles to the next tick)."""
        cpu = self.m.cpu
        ring = cpu.read32(Bda.address("kbd_buf_head"))  # head and tail in one read: every poll pays it
        head, tail = ring & 0xFFFF, ring >> 16
        frame = cpu.frame_flags_addr()
        flags = cpu.read16(frame)
        if head == tail:
            cpu.write16(frame, flags | FLAG_ZF, code=False)
            # Whatever the caller's IF: the BIOS polls with interrupts on (SYSLINUX's prompt polls with IF=0).
            self.polls += 1
            if self.polls >= IDLE_POLLS_PER_TICK:
                self.polls = 0
                self.m.wait_in_bios()
            else:
                self.m.irq_window()
            return
        cpu.set("ax", cpu.read16(BDA + head))
        cpu.write16(frame, flags & ~FLAG_ZF, code=False)

    def shift_flags(self) -> None:
        """INT 16,02 - Shift flags. Return: AL = 40:17."""
        self.m.cpu.set("al", self.bda.kbd_flag0)

    def shift_flags_extended(self) -> None:
        """INT 16,12 - Extended shift flags. Return: AL = 40:17, AH = 40:18."""
        cpu = self.m.cpu
        cpu.set("al", self.bda.kbd_flag0)
        cpu.set("ah", self.bda.kbd_flag1)

    def store(self) -> None:
        """INT 16,05 - Store a key. Entry: CX the key (CH scan code, CL character). Return: AL 00h, or 01h
        when the ring is full."""
        cpu = self.m.cpu
        cpu.set("al", 0 if self.push(cpu.get("cx")) else 1)
