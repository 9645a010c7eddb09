"""A misbehaving NBD server on loopback, one mode per way real servers have gone wrong.

    with BadServer("stall") as srv:      # srv.uri, srv.hostport, srv.connections
        ...

Modes (all negotiate fixed newstyle, structured replies, base:allocation and GO unless said):
  stall             completes the handshake, then never answers a request (keeps the socket open)
  stall-after-boot  serves a boot sector (READER: prints '*', then reads LBA 126 with int 13h in a loop:
                    beyond the 32 KiB the drive's read-ahead fetches with the boot sector)
                    at offset 0 and never answers a read anywhere else: the guest hangs in int 13h
  drop-after-boot   the same boot sector, then closes the connection at any other read (reconnects
                    are accepted, and dropped again at the re-sent read)
  list-flood        answers NBD_OPT_LIST with NBD_REP_SERVER replies that never end
  huge              an export of `size` bytes (default 2^63-512): reads are zeros, block status one
                    hole+zero extent over the request
  extents-past-end  block status whose last extent runs 1 MiB past the end of the export
  bad-block-size    NBD_INFO_BLOCK_SIZE with a minimum of 3 (not a power of two)
  zeros             a well-behaved export of zeros (the control case)

Every connection is served in its own thread; `connections` counts them. Run as a script
(`python3 tests/support/badnbd.py MODE [--size N] [--port P]`) it serves until killed.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nbdboot.nbd import protocol as P  # noqa: E402

MODES = ("stall", "stall-after-boot", "drop-after-boot", "list-flood", "huge", "extents-past-end", "bad-block-size", "zeros")

# mov ah,0Eh; mov al,'*'; int 10h; again: mov ax,0201h; mov cx,1; mov dx,0280h; xor bx,bx; mov es,bx;
# mov bx,8000h; int 13h; jmp again   (C/H/S 0/2/1 with the 255/63 geometry a table-less disk gets: LBA 126)
READER = bytes.fromhex("b40eb02acd10" "b80102" "b90100" "ba8002" "31db" "8ec3" "bb0080" "cd13" "ebec")
BOOT_SECTOR = READER.ljust(510, b"\0") + b"\x55\xaa"



def recv_exactly(s: socket.socket, n: int) -> bytes:
    """`n` bytes from `s`; EOFError if the peer closes first."""
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out

class BadServer:
    def __init__(self, mode: str, size: int | None = None, port: int = 0):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.size = size if size is not None else ((1 << 63) - 512 if mode == "huge" else 1 << 20)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"nbd://127.0.0.1:{self.port}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._stop.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.listener.close()
        except OSError:
            pass
        for s in list(self._socks):
            try:
                s.shutdown(socket.SHUT_RDWR)   # close() alone leaves a thread blocked in recv holding it
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s) -> None:
        try:
            s.sendall(P.encode_newstyle_greeting())
            recv_exactly(s, 4)
            contexts = False
            while True:
                opt, n = P.decode_option_header(recv_exactly(s, 16))
                recv_exactly(s, n)  # the option data: no mode answers by it
                if opt == P.OPT_LIST:
                    if self.mode == "list-flood":
                        reply = P.encode_option_reply(opt, P.REP_SERVER, P.encode_rep_server("x" * 64, "y" * 64))
                        while not self._stop.is_set():
                            s.sendall(reply * 256)
                        return
                    s.sendall(P.encode_option_reply(opt, P.REP_SERVER, P.encode_rep_server(""))
                              + P.encode_option_reply(opt, P.REP_ACK))
                elif opt == P.OPT_STRUCTURED_REPLY:
                    s.sendall(P.encode_option_reply(opt, P.REP_ACK))
                elif opt in (P.OPT_SET_META_CONTEXT, P.OPT_LIST_META_CONTEXT):
                    contexts = True
                    s.sendall(P.encode_option_reply(opt, P.REP_META_CONTEXT,
                                                    P.encode_rep_meta_context(1, P.CONTEXT_BASE_ALLOCATION))
                              + P.encode_option_reply(opt, P.REP_ACK))
                elif opt in (P.OPT_GO, P.OPT_INFO):
                    flags = P.TFLAG_HAS_FLAGS | P.TFLAG_SEND_FLUSH | P.TFLAG_READ_ONLY
                    out = P.encode_option_reply(opt, P.REP_INFO, struct.pack(">HQH", P.INFO_EXPORT, self.size, flags))
                    if self.mode == "bad-block-size":
                        out += P.encode_option_reply(opt, P.REP_INFO, struct.pack(">HIII", P.INFO_BLOCK_SIZE,
                                                                                  3, 4096, 1 << 20))
                    s.sendall(out + P.encode_option_reply(opt, P.REP_ACK))
                    if opt == P.OPT_GO:
                        break
                elif opt == P.OPT_ABORT:
                    s.sendall(P.encode_option_reply(opt, P.REP_ACK))
                    return
                else:
                    s.sendall(P.encode_option_reply(opt, P.REP_ERR_UNSUP))
            self._transmission(s, contexts)
        except (EOFError, OSError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def _transmission(self, s, contexts: bool) -> None:
        while True:
            _flags, cmd, cookie, offset, length = P.decode_request(recv_exactly(s, 28))
            if cmd == P.CMD_DISC:
                return
            after_boot = self.mode.endswith("-after-boot")
            if after_boot and (cmd != P.CMD_READ or offset >= 512):
                if self.mode == "drop-after-boot":
                    return
                self._stop.wait()
                return
            if self.mode == "stall":
                self._stop.wait()
                return
            if cmd == P.CMD_READ and after_boot:
                data = (BOOT_SECTOR + bytes(length))[offset:offset + length]
                s.sendall(P.encode_offset_data(cookie, offset, length, True) + data)
            elif cmd == P.CMD_READ:
                s.sendall(P.encode_offset_data(cookie, offset, length, True) + bytes(length))
            elif cmd == P.CMD_BLOCK_STATUS and contexts:
                extent = length
                if self.mode == "extents-past-end":
                    extent = self.size - offset + (1 << 20)
                extent = min(extent, 0xFFFFFFFF)
                s.sendall(P.encode_block_status(cookie, 1, [(extent, P.STATE_HOLE | P.STATE_ZERO)]))
            else:
                s.sendall(P.encode_simple_reply(cookie))


def main(argv: list[str]) -> None:
    import argparse
    import time
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=MODES)
    p.add_argument("--size", type=int)
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)
    srv = BadServer(a.mode, a.size, a.port)
    print(srv.uri, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
