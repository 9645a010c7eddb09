"""A VNC server for the live view (`--vnc :N`, as QEMU's -vnc): RFB 3.8 (3.3 and 3.7
clients too), security type None, raw encoding and the DesktopSize pseudo-encoding
(the guest changing video mode resizes the viewer). Loopback only.

Frames are rendered on the CPU thread between slices (`tick()`), and only while a
client has asked for one, at most FRAME_INTERVAL apart: nobody watching costs
nothing, and the renderer never races the guest's memory map. An update sends
the band of rows that changed. Keys and pointer events are queued by the client
threads and handed to the guest by `tick()`: keys go in as typed keys (IRQ1),
pointer moves to `machine.mouse.move(dx, dy, buttons)` (dy > 0 up, PS/2 button order).
"""

from __future__ import annotations

import collections
import socket
import struct
import threading

from nbdboot.console.keys import ASCII_KEYS, NAMED_KEYS

FRAME_INTERVAL = 0.1  # seconds between renders while a client waits for a change
ENCODING_RAW = 0
ENCODING_DESKTOP_SIZE = -223
NAME = b"nbdboot"

KEYSYMS = {0xFF0D: "enter", 0xFF8D: "enter", 0xFF08: "bksp", 0xFF09: "tab", 0xFF1B: "esc", 0xFF50: "home",
           0xFF51: "left", 0xFF52: "up", 0xFF53: "right", 0xFF54: "down", 0xFF55: "pgup", 0xFF56: "pgdn",
           0xFF57: "end", 0xFF63: "ins", 0xFFFF: "del"}
KEYSYMS.update({0xFFBE + i: f"f{i + 1}" for i in range(12)})
CONTROL_KEYSYMS = (0xFFE3, 0xFFE4)


def key_word(keysym: int, ctrl: bool) -> int | None:
    """The BIOS key (scan << 8 | ASCII) for an X keysym, or None for keys we do not type."""
    if keysym in KEYSYMS:
        return NAMED_KEYS[KEYSYMS[keysym]]
    if 0x20 <= keysym <= 0x7E:
        ch = chr(keysym)
        if ctrl and ch.isalpha():
            return NAMED_KEYS[f"ctrl-{ch.lower()}"]
        return ASCII_KEYS.get(ch)
    return None


def _recv_exact(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    return data


class PixelFormat:
    def __init__(self, data: bytes):
        (self.bpp, self.depth, self.big_endian, self.true_colour, self.red_max, self.green_max, self.blue_max,
         self.red_shift, self.green_shift, self.blue_shift) = struct.unpack(">BBBBHHHBBB", data[:13])

    def encode(self, rgb: bytes) -> bytes:
        """Packed RGB as this client's pixels."""
        n = len(rgb) // 3
        if (self.bpp == 32 and self.true_colour and (self.red_max, self.green_max, self.blue_max) == (255, 255, 255)
                and {self.red_shift, self.green_shift, self.blue_shift} <= {0, 8, 16, 24}):
            out = bytearray(4 * n)
            for shift, offset in ((self.red_shift, 0), (self.green_shift, 1), (self.blue_shift, 2)):
                byte = shift // 8 if not self.big_endian else 3 - shift // 8
                out[byte::4] = rgb[offset::3]
            return bytes(out)
        size = self.bpp // 8
        order = ">" if self.big_endian else "<"
        fmt = {1: "B", 2: "H", 4: "I"}[size]
        pack = struct.Struct(order + fmt).pack
        rs, gs, bs = 255 // max(self.red_max, 1), 255 // max(self.green_max, 1), 255 // max(self.blue_max, 1)
        return b"".join(pack((rgb[i] // rs << self.red_shift) | (rgb[i + 1] // gs << self.green_shift)
                             | (rgb[i + 2] // bs << self.blue_shift)) for i in range(0, len(rgb), 3))


DEFAULT_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)


class Client:
    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.format = PixelFormat(DEFAULT_FORMAT)
        self.encodings: set[int] = {ENCODING_RAW}
        self.wants: tuple[bool, int, int, int, int] | None = None  # a pending update request
        self.size = (0, 0)
        self.last: bytes | None = None  # the frame this client last got (packed RGB)
        self.pointer = (0, 0)
        self.ctrl = False
        self.lock = threading.Lock()

    def handshake(self) -> None:
        sock = self.sock
        sock.sendall(b"RFB 003.008\n")
        version = _recv_exact(sock, 12)
        if not version.startswith(b"RFB 003."):
            raise ConnectionError("not an RFB client")
        minor = int(version[8:11])
        if minor >= 7:
            sock.sendall(b"\x01\x01")  # one security type: None
            if _recv_exact(sock, 1) != b"\x01":
                raise ConnectionError("client refused security type None")
            if minor >= 8:
                sock.sendall(struct.pack(">I", 0))
        else:
            sock.sendall(struct.pack(">I", 1))
        _recv_exact(sock, 1)  # shared flag: every client shares the one screen
        width, height, _ = self.server.frame()
        self.size = (width, height)
        sock.sendall(struct.pack(">HH", width, height) + DEFAULT_FORMAT + struct.pack(">I", len(NAME)) + NAME)

    def serve(self) -> None:
        sock = self.sock
        while True:
            kind = _recv_exact(sock, 1)[0]
            if kind == 0:
                self.format = PixelFormat(_recv_exact(sock, 19)[3:])
            elif kind == 2:
                count = struct.unpack(">xH", _recv_exact(sock, 3))[0]
                self.encodings = set(struct.unpack(f">{count}i", _recv_exact(sock, 4 * count)))
            elif kind == 3:
                incremental, x, y, w, h = struct.unpack(">BHHHH", _recv_exact(sock, 9))
                with self.lock:
                    self.wants = (bool(incremental), x, y, w, h)
                self.server.frame_wanted()
            elif kind == 4:
                down, keysym = struct.unpack(">Bxxi", _recv_exact(sock, 7))
                keysym &= 0xFFFFFFFF
                if keysym in CONTROL_KEYSYMS:
                    self.ctrl = bool(down)
                elif down:
                    word = key_word(keysym, self.ctrl)
                    if word is not None:
                        self.server.events.append(("key", word))
            elif kind == 5:
                mask, x, y = struct.unpack(">BHH", _recv_exact(sock, 5))
                px, py = self.pointer
                self.pointer = (x, y)
                buttons = (mask & 1) | ((mask & 4) >> 1) | ((mask & 2) << 1)  # RFB L/M/R -> PS/2 L/R/M
                self.server.events.append(("pointer", (x - px, y - py, buttons)))
            elif kind == 6:
                length = struct.unpack(">xxxI", _recv_exact(sock, 7))[0]
                if length > 1 << 20:
                    raise ConnectionError("cut text too long")
                _recv_exact(sock, length)
            else:
                raise ConnectionError(f"unknown client message {kind}")

    def send_frame(self, width: int, height: int, rgb: bytes) -> None:
        """Answer the pending request from this frame (CPU thread; sends are small or few)."""
        with self.lock:
            wants = self.wants
            if wants is None:
                return
            incremental = wants[0]
            if (width, height) != self.size:
                if ENCODING_DESKTOP_SIZE not in self.encodings:
                    return  # a client that cannot resize keeps its size; nothing sensible to send
                self.size = (width, height)
                self.last = None
                self.wants = None
                header = struct.pack(">BxH", 0, 2) + struct.pack(">HHHHi", 0, 0, width, height, ENCODING_DESKTOP_SIZE)
                body = struct.pack(">HHHHi", 0, 0, width, height, ENCODING_RAW) + self.format.encode(rgb)
                self.last = rgb
                self._send(header + body)
                return
            stride = 3 * width
            if incremental and self.last is not None:
                if self.last == rgb:
                    return  # keep the request until something changes
                top = 0
                while self.last[top * stride:(top + 1) * stride] == rgb[top * stride:(top + 1) * stride]:
                    top += 1
                bottom = height
                while self.last[(bottom - 1) * stride:bottom * stride] == rgb[(bottom - 1) * stride:bottom * stride]:
                    bottom -= 1
            else:
                top, bottom = 0, height
            self.wants = None
            self.last = rgb
            band = rgb[top * stride:bottom * stride]
            message = struct.pack(">BxH", 0, 1) + struct.pack(">HHHHi", 0, top, width, bottom - top, ENCODING_RAW)
            self._send(message + self.format.encode(band))

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class VncServer:
    def __init__(self, machine, host: str = "127.0.0.1", port: int = 5900):
        self.machine = machine
        self.host, self.port = host, port
        self.clients: list[Client] = []
        self.events: collections.deque = collections.deque()
        self._listener = None
        self._frame = None  # (width, height, rgb) of the last render
        self._frame_time = 0.0
        self._wanted = threading.Event()
        self._rendered = threading.Condition()
        self._stopped = False

    def start(self) -> None:
        from nbdboot.errors import LocalIOError
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError as e:
            listener.close()
            raise LocalIOError(f"--vnc: cannot listen on {self.host} port {self.port}: {e.strerror}") from None
        listener.listen(4)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True, name="nbdboot-vnc").start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(sock,), daemon=True, name="nbdboot-vnc-client").start()

    def _serve(self, sock) -> None:
        client = Client(self, sock)
        try:
            sock.settimeout(30)
            client.handshake()
            sock.settimeout(None)
            self.clients.append(client)
            client.serve()
        except (OSError, ConnectionError, struct.error, ValueError):
            pass
        finally:
            if client in self.clients:
                self.clients.remove(client)
            client.close()

    def frame(self) -> tuple[int, int, bytes]:
        """The current frame for a client thread: asks the CPU thread for a render and waits for it."""
        with self._rendered:
            if self._frame is None:
                self._wanted.set()
                self._rendered.wait(5)
            return self._frame or (640, 480, bytes(640 * 480 * 3))

    def frame_wanted(self) -> None:
        self._wanted.set()

    def tick(self, now: float) -> None:
        """Between slices on the CPU thread: hand over input, render if a client is waiting."""
        machine = self.machine
        while self.events:
            kind, value = self.events.popleft()
            if kind == "key":
                machine.bios.keyboard.type_keys([("key", value)], start_now=True)
            else:
                mouse = getattr(machine, "mouse", None)  # the PS/2 mouse, where the PC has one
                if mouse is not None:
                    dx, dy, buttons = value
                    mouse.move(dx, -dy, buttons)  # screen y grows down, the mouse's up
        if not self._wanted.is_set() or now - self._frame_time < FRAME_INTERVAL:
            return
        from nbdboot.console.render import render
        frame = render(machine)
        self._frame_time = now
        with self._rendered:
            self._frame = frame
            self._rendered.notify_all()
        waiting = False
        for client in list(self.clients):
            client.send_frame(*frame)
            waiting = waiting or client.wants is not None
        if not waiting and all(c.size != (0, 0) for c in self.clients):
            self._wanted.clear()

    def stop(self) -> None:
        self._stopped = True
        if self._listener is not None:
            self._listener.close()
        for client in list(self.clients):
            client.close()
