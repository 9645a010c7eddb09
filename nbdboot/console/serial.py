"""Where a UART's line goes: `--serial` backends, spelled as QEMU's -serial.

  stdio              guest output to stdout, stdin to the guest
  FILE, file:FILE    guest output to FILE, created or emptied first as QEMU's does, no input
  unix:PATH          connect to a unix socket (`,server=on[,wait=off]` listens instead)
  tcp:HOST:PORT      connect to HOST:PORT on loopback (`,server=on[,wait=off]` listens instead)
  null, none         output discarded (still collected for --expect)

A reader thread puts received bytes on the UART's `incoming` queue; the CPU
thread moves them into the FIFO between slices (machine/devices/uart.py).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

from nbdboot.errors import LocalIOError, UsageError
from nbdboot.unixsock import remove_stale_socket

LOOPBACK = ("127.0.0.1", "::1", "localhost")
ACCEPT_WAIT = 60.0  # seconds a `server=on,wait=on` socket waits for its client


def _options(text: str) -> tuple[str, dict[str, str]]:
    head, *rest = text.split(",")
    options = {}
    for item in rest:
        key, _, value = item.partition("=")
        options[key] = value or "on"
    for key in options:
        if key not in ("server", "wait", "nowait"):
            raise UsageError(f"--serial: unknown option {key!r} in {text!r} (server=on, wait=off)")
    if "nowait" in options:
        options["wait"] = "off"
    return head, options


class SerialBackend:
    """One --serial: `attach(uart)` connects it; `close()` ends it."""

    def __init__(self, spec: str):
        self.spec = spec
        self.kind = None
        self._file = None
        self._sock = None
        self._listener = None
        self._uart = None
        self._closed = False
        self._stdin_saved = None
        head, options = _options(spec)
        self.server = options.get("server", "off") == "on"
        self.wait = options.get("wait", "on") == "on"
        if head in ("null", "none"):
            self.kind = "null"
        elif head == "stdio":
            self.kind = "stdio"
        elif head.startswith("unix:"):
            self.kind, self.address = "unix", head[5:]
            if not self.address:
                raise UsageError("--serial unix: needs a PATH")
        elif head.startswith("tcp:"):
            host, _, port = head[4:].rpartition(":")
            host = host.strip("[]") or "127.0.0.1"
            if host not in LOOPBACK:
                raise UsageError(f"--serial tcp: only loopback hosts (127.0.0.1, ::1), not {host!r}")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise UsageError(f"--serial tcp:HOST:PORT needs a port number, not {port!r}")
            self.kind, self.address = "tcp", (host, int(port))
        else:
            path = head[5:] if head.startswith("file:") else head
            if not path:
                raise UsageError("--serial file: needs a FILE")
            self.kind, self.address = "file", path

    def open(self) -> None:
        if self.kind == "file":
            try:
                self._file = open(self.address, "wb", buffering=0)
            except OSError as e:
                raise LocalIOError(f"--serial: cannot open {self.address}: {e.strerror}") from None
        elif self.kind in ("unix", "tcp"):
            family = socket.AF_UNIX if self.kind == "unix" else \
                (socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET)
            if self.server:
                listener = socket.socket(family, socket.SOCK_STREAM)
                try:
                    if self.kind == "tcp":
                        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    else:
                        remove_stale_socket(self.address)
                    listener.bind(self.address)
                    listener.listen(1)
                except OSError as e:
                    listener.close()
                    raise LocalIOError(f"--serial: cannot listen on {self.spec}: {e.strerror}") from None
                self._listener = listener
                if self.wait:
                    self._accept(ACCEPT_WAIT)
                else:
                    threading.Thread(target=self._accept, args=(None,), daemon=True,
                                     name="nbdboot-serial-accept").start()
            else:
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.settimeout(10)
                try:
                    sock.connect(self.address)
                except OSError as e:
                    sock.close()
                    raise LocalIOError(f"--serial: cannot connect to {self.spec}: {e.strerror or e}") from None
                sock.settimeout(None)
                self._sock = sock

    def _accept(self, timeout: float | None) -> None:
        listener = self._listener
        deadline = None if timeout is None else time.monotonic() + timeout
        listener.settimeout(0.2)
        while not self._closed:
            try:
                sock, _ = listener.accept()
            except socket.timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise LocalIOError(f"--serial: no client connected to {self.spec} within {timeout:g}s") from None
                continue
            except OSError:
                return
            sock.settimeout(None)
            self._sock = sock
            if self._uart is not None:
                self._start_reader()
            return

    def attach(self, uart) -> None:
        self._uart = uart
        uart.out = self.write
        if self.kind == "stdio":
            fd = sys.stdin.fileno() if sys.stdin else -1
            if fd >= 0 and os.isatty(fd):
                import termios
                self._stdin_saved = termios.tcgetattr(fd)
                mode = termios.tcgetattr(fd)
                mode[0] &= ~termios.ICRNL  # Enter is CR on a serial line
                mode[3] &= ~(termios.ICANON | termios.ECHO)
                termios.tcsetattr(fd, termios.TCSANOW, mode)
            if fd >= 0:
                threading.Thread(target=self._read_fd, args=(fd,), daemon=True, name="nbdboot-serial-in").start()
        elif self._sock is not None:
            self._start_reader()

    def _start_reader(self) -> None:
        threading.Thread(target=self._read_socket, args=(self._sock,), daemon=True, name="nbdboot-serial-in").start()

    def _read_fd(self, fd: int) -> None:
        while not self._closed:
            try:
                data = os.read(fd, 256)
            except OSError:
                return
            if not data:
                return
            self._uart.incoming.extend(data)

    def _read_socket(self, sock) -> None:
        while not self._closed:
            try:
                data = sock.recv(4096)
            except OSError:
                return
            if not data:
                return
            self._uart.incoming.extend(data)

    def write(self, data: bytes) -> None:
        try:
            if self.kind == "stdio":
                out = sys.stdout.buffer
                out.write(data)
                out.flush()
            elif self._file is not None:
                self._file.write(data)
            elif self._sock is not None:
                self._sock.sendall(data)
        except (OSError, ValueError):
            pass  # a peer gone away loses the line, as a cable pulled out would

    def close(self) -> None:
        self._closed = True
        if self._stdin_saved is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._stdin_saved)
            self._stdin_saved = None
        for thing in (self._file, self._sock, self._listener):
            if thing is not None:
                try:
                    thing.close()
                except OSError:
                    pass
        if self.kind == "unix" and self.server and self._listener is not None:
            try:
                os.unlink(self.address)
            except OSError:
                pass
        self._file = self._sock = self._listener = None
