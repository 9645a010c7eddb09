"""The VNC live view at the protocol level: a real RFB 3.8 client handshake against `nbdboot run --vnc`,
raw frames that show the guest's mode 13h screen, a resize when the guest leaves text mode, and a key
typed in the viewer reaching the guest (which answers on COM1, where --expect waits for it)."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time

from nbdboot.debug.sectors import assemble
from support.servers import free_port

PROGRAM = r"""
        mov ax, 0013h
        int 10h
        push 0A000h
        pop es
        xor di, di
        mov cx, 64000
        mov al, 4               ; red
        rep stosb
        xor ah, ah
        int 16h                 ; wait for a key
        mov bl, al
        xor di, di
        mov cx, 64000
        mov al, 2               ; green
        rep stosb
        mov dx, 0
        mov si, msg
.send:  lodsb
        test al, al
        jz .key
        mov ah, 01h
        int 14h
        jmp .send
.key:   mov al, bl
        mov ah, 01h
        int 14h
        xor ah, ah
        int 16h                 ; a second key: the viewer saw the green screen
        mov ah, 01h
        int 14h
        sti
.idle:  hlt
        jmp .idle
msg:    db "GOT ", 0
"""


def recv_exact(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "server closed the connection"
        data += chunk
    return data


class Viewer:
    """Just enough of an RFB 3.8 client: 32-bit true colour, raw + DesktopSize."""

    def __init__(self, port: int):
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                assert time.monotonic() < deadline, "VNC server never listened"
                time.sleep(0.1)
        assert recv_exact(self.sock, 12) == b"RFB 003.008\n"
        self.sock.sendall(b"RFB 003.008\n")
        count = recv_exact(self.sock, 1)[0]
        assert 1 in recv_exact(self.sock, count)
        self.sock.sendall(b"\x01")
        assert recv_exact(self.sock, 4) == b"\0\0\0\0"
        self.sock.sendall(b"\x01")
        self.width, self.height = struct.unpack(">HH", recv_exact(self.sock, 4))
        pixel_format = recv_exact(self.sock, 16)
        assert pixel_format[:4] == bytes((32, 24, 0, 1))
        name = recv_exact(self.sock, struct.unpack(">I", recv_exact(self.sock, 4))[0])
        assert name == b"nbdboot"
        self.fb = bytearray(4 * self.width * self.height)
        self.sock.sendall(struct.pack(">BxHii", 2, 2, 0, -223))

    def update(self, incremental: bool) -> None:
        self.sock.sendall(struct.pack(">BBHHHH", 3, incremental, 0, 0, self.width, self.height))
        kind, count = struct.unpack(">BxH", recv_exact(self.sock, 4))
        assert kind == 0
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", recv_exact(self.sock, 12))
            if encoding == -223:
                self.width, self.height = w, h
                self.fb = bytearray(4 * w * h)
                continue
            assert encoding == 0
            data = recv_exact(self.sock, 4 * w * h)
            for row in range(h):
                at = 4 * ((y + row) * self.width + x)
                self.fb[at:at + 4 * w] = data[4 * w * row:4 * w * (row + 1)]

    def colours(self) -> set[bytes]:
        """The (R, G, B) seen, sampled: pixels are little-endian 0x00RRGGBB, so B, G, R in memory."""
        return {bytes(self.fb[i + 2:i - 1 if i else None:-1]) for i in range(0, len(self.fb), 4 * 61)}

    def key(self, keysym: int) -> None:
        self.sock.sendall(struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym))


def test_vnc_shows_the_screen_and_types(tmp_path):
    image = assemble(tmp_path, PROGRAM)
    disk = tmp_path / "disk.img"
    disk.write_bytes(image + bytes(1440 * 1024 - len(image)))
    port = free_port()
    if port < 5900:
        port = 5900 + (port % 1000) + 100
    proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "run", "--image", str(disk), "--drive", "0x00",
                             "--vnc", f":{port - 5900}", "--expect", "GOT xq", "--expect-on", "serial",
                             "--timeout", "60", "--headless"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        viewer = Viewer(port)
        viewer.update(False)
        deadline = time.monotonic() + 30
        while viewer.colours() != {b"\xa8\x00\x00"}:  # mode 13h, all colour 4 (DAC 2Ah, 0, 0)
            assert time.monotonic() < deadline, viewer.colours()
            viewer.update(True)
        assert (viewer.width, viewer.height) == (640, 400)
        viewer.key(ord("x"))
        while viewer.colours() != {b"\x00\xa8\x00"}:
            assert time.monotonic() < deadline, viewer.colours()
            viewer.update(True)
        viewer.key(ord("q"))
        assert proc.wait(30) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
