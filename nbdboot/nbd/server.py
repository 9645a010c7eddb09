"""The embedded NBD server: BlockDevices served over TCP or a unix socket.

API
    server = NbdServer(exports, *, host="127.0.0.1", port=0, unix=None,
                       read_only=False, structured=True, handshake_timeout=30)
        exports: a BlockDevice (served as the default export "") or a dict
                 name -> BlockDevice; the first entry also answers to "".
    server.start() -> address    binds (port 0 picks a free one), serves in background threads
    server.address               (host, port) or the unix socket path
    server.uri                   "nbd://127.0.0.1:PORT/" or "nbd+unix:///?socket=PATH"
    server.uri_for(name)         URI of one export
    server.stop()                closes the listener and every connection (devices stay open)
    server.serve_forever()       start() and block until stop() or Ctrl-C
    with NbdServer(dev) as srv: ...   start() on enter, stop() on exit

Fixed newstyle only: EXPORT_NAME, ABORT, LIST, INFO, GO (INFO_EXPORT, NAME,
DESCRIPTION, BLOCK_SIZE), STRUCTURED_REPLY, LIST/SET_META_CONTEXT with
base:allocation from device.extents(); STARTTLS is refused (ERR_UNSUP).
Commands READ, WRITE(+FUA), FLUSH, TRIM, WRITE_ZEROES(+NO_HOLE, FAST_ZERO),
BLOCK_STATUS(+REQ_ONE), CACHE, DISC, each gated by what the device can do.
One thread per client; a device is used by one thread at a time.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from nbdboot.errors import DiskError, DiskUnsupportedError
from nbdboot.nbd import protocol as P
from nbdboot.nbd.errors import (
    EINVAL, EIO, ENOSPC, ENOTSUP, EOVERFLOW, EPERM, NbdError, NbdProtocolError, known_errno,
)
from nbdboot.nbd.uri import NbdUri
from nbdboot.unixsock import remove_stale_socket

if TYPE_CHECKING:   # what it serves; the disk package builds on this one, not the other way round
    from nbdboot.disk.base import BlockDevice

_MAX_OPTION = 64 * 1024
_BASE_ALLOCATION_ID = 1
_MAX_EXTENTS = 1 << 20


class _Disconnect(Exception):
    """End this client's session (quietly)."""


class _Conn:
    def __init__(self, server: "NbdServer", sock: socket.socket):
        self.server = server
        self.sock = sock
        self.structured = False
        self.no_zeroes = False
        self.meta_export: str | None = None
        self.meta_ids: dict[int, str] = {}
        self.name = ""
        self.device: BlockDevice | None = None
        self.lock: threading.Lock | None = None
        self.read_only = False
        self.buf = bytearray(0)

    # -- I/O -------------------------------------------------------------------------------------
    def recv_exact(self, n: int) -> bytes:
        out = bytearray(n)
        self.recv_into(memoryview(out))
        return bytes(out)

    def recv_into(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise _Disconnect()
            got += k

    def send(self, *parts) -> None:
        views = [memoryview(p).cast("B") for p in parts if len(p)]
        while views:
            P.drop_sent(views, self.sock.sendmsg(views))

    # -- handshake -------------------------------------------------------------------------------
    def handshake(self) -> None:
        self.send(P.encode_newstyle_greeting(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES))
        (cflags,) = struct.unpack(">I", self.recv_exact(4))
        if cflags & ~(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES):
            raise _Disconnect()  # MUST drop on flags we did not offer
        self.no_zeroes = bool(cflags & P.FLAG_C_NO_ZEROES)
        while True:
            opt, length = P.decode_option_header(self.recv_exact(P.OPTION_HEADER_SIZE))
            if length > _MAX_OPTION:
                self._discard(length)
                self.reply(opt, P.REP_ERR_TOO_BIG, b"option too long")
                continue
            data = self.recv_exact(length)
            if self.option(opt, data):
                return

    def _discard(self, n: int) -> None:
        while n:
            n -= len(self.recv_exact(min(n, 65536)))

    def reply(self, opt: int, kind: int, data: bytes = b"") -> None:
        self.send(P.encode_option_reply(opt, kind, data))

    def option(self, opt: int, data: bytes) -> bool:
        """Answer one option; True when transmission starts."""
        srv = self.server
        if opt == P.OPT_EXPORT_NAME:
            name = data.decode("utf-8", "replace")
            dev = srv.lookup(name)
            if dev is None:
                raise _Disconnect()
            self.select(name, dev)
            self.send(P.encode_export_name_reply(dev.size, self.flags(), self.no_zeroes))
            return True
        if opt == P.OPT_ABORT:
            self.reply(opt, P.REP_ACK)
            raise _Disconnect()
        if opt == P.OPT_LIST:
            if data:
                self.reply(opt, P.REP_ERR_INVALID, b"LIST takes no data")
                return False
            for name, dev in srv.exports.items():
                self.reply(opt, P.REP_SERVER, P.encode_rep_server(name, dev.description or ""))
            self.reply(opt, P.REP_ACK)
            return False
        if opt in (P.OPT_INFO, P.OPT_GO):
            try:
                name, infos = P.decode_info_request(data)
            except NbdProtocolError as e:
                self.reply(opt, P.REP_ERR_INVALID, str(e).encode())
                return False
            dev = srv.lookup(name)
            if dev is None:
                self.reply(opt, P.REP_ERR_UNKNOWN, f"no export {name!r}".encode())
                return False
            flags = self.flags(dev)
            self.reply(opt, P.REP_INFO, P.encode_info_export(dev.size, flags))
            if P.INFO_NAME in infos:
                self.reply(opt, P.REP_INFO, P.encode_info_string(P.INFO_NAME, name))
            if P.INFO_DESCRIPTION in infos and dev.description:
                self.reply(opt, P.REP_INFO, P.encode_info_string(P.INFO_DESCRIPTION, dev.description))
            mn, pref, mx = self.block_sizes(dev)
            self.reply(opt, P.REP_INFO, P.encode_info_block_size(mn, pref, mx))
            self.reply(opt, P.REP_ACK)
            if opt == P.OPT_GO:
                self.select(name, dev)
                return True
            return False
        if opt == P.OPT_STRUCTURED_REPLY and srv.structured_ok:
            if data:
                self.reply(opt, P.REP_ERR_INVALID, b"STRUCTURED_REPLY takes no data")
                return False
            self.structured = True
            self.reply(opt, P.REP_ACK)
            return False
        if opt in (P.OPT_LIST_META_CONTEXT, P.OPT_SET_META_CONTEXT) and srv.structured_ok:
            return self.meta_context(opt, data)
        self.reply(opt, P.REP_ERR_UNSUP, b"option not supported")
        return False

    def meta_context(self, opt: int, data: bytes) -> bool:
        if not self.structured:
            self.reply(opt, P.REP_ERR_INVALID, b"negotiate structured replies first")
            return False
        try:
            export, queries = P.decode_meta_query(data)
        except NbdProtocolError as e:
            self.reply(opt, P.REP_ERR_INVALID, str(e).encode())
            return False
        if self.server.lookup(export) is None:
            self.reply(opt, P.REP_ERR_UNKNOWN, f"no export {export!r}".encode())
            return False
        if opt == P.OPT_SET_META_CONTEXT:
            self.meta_export, self.meta_ids = export, {}
        chosen = False
        if opt == P.OPT_LIST_META_CONTEXT and not queries:
            chosen = True
        for q in queries:
            if q in (P.CONTEXT_BASE_ALLOCATION, "base:"):
                chosen = True
        if chosen:
            if opt == P.OPT_SET_META_CONTEXT:
                self.meta_ids[_BASE_ALLOCATION_ID] = P.CONTEXT_BASE_ALLOCATION
            cid = _BASE_ALLOCATION_ID if opt == P.OPT_SET_META_CONTEXT else 0
            self.reply(opt, P.REP_META_CONTEXT, P.encode_rep_meta_context(cid, P.CONTEXT_BASE_ALLOCATION))
        self.reply(opt, P.REP_ACK)
        return False

    def select(self, name: str, dev: BlockDevice) -> None:
        self.name, self.device = name, dev
        self.lock = self.server.lock_for(dev)
        self.read_only = self.server.read_only or dev.read_only
        if self.meta_export is not None and self.server.lookup(self.meta_export) is not dev:
            self.meta_ids = {}  # contexts were chosen for another export
        mn, pref, mx = self.block_sizes(dev)
        self.max_payload = mx
        self.buf = bytearray(min(mx, 32 << 20))

    def block_sizes(self, dev: BlockDevice) -> tuple[int, int, int]:
        mn = max(1, dev.min_block)
        pref = max(dev.preferred_block, 512, mn)
        mx = max(min(dev.max_block, 32 << 20), pref)
        return mn, pref, mx

    def flags(self, dev: BlockDevice | None = None) -> int:
        dev = dev or self.device
        ro = self.server.read_only or dev.read_only
        f = P.TFLAG_HAS_FLAGS
        if ro:
            f |= P.TFLAG_READ_ONLY
        else:
            if dev.can_flush:
                f |= P.TFLAG_SEND_FLUSH
            if dev.can_fua:
                f |= P.TFLAG_SEND_FUA
            if dev.can_trim:
                f |= P.TFLAG_SEND_TRIM
            if dev.can_zero:
                f |= P.TFLAG_SEND_WRITE_ZEROES | P.TFLAG_SEND_FAST_ZERO
        if dev.can_cache:
            f |= P.TFLAG_SEND_CACHE
        if dev.can_multi_conn:
            f |= P.TFLAG_CAN_MULTI_CONN
        if self.structured:
            f |= P.TFLAG_SEND_DF
        return f

    # -- transmission ------------------------------------------------------------------------------
    def transmission(self) -> None:
        dev = self.device
        allowed = self.flags()
        while True:
            flags, cmd, cookie, offset, length = P.decode_request(self.recv_exact(P.REQUEST_SIZE))
            if cmd == P.CMD_DISC:
                raise _Disconnect()
            if cmd == P.CMD_WRITE:
                if length > self.max_payload:
                    raise _Disconnect()  # cannot skip a payload that large safely
                view = memoryview(self.buf)[:length]
                self.recv_into(view)
            error = self.check(cmd, flags, offset, length, allowed, dev)
            if error:
                self.fail(cmd, cookie, error)
                continue
            try:
                with self.lock:
                    if cmd == P.CMD_READ:
                        view = memoryview(self.buf)[:length]
                        dev.pread_into(view, offset)
                    elif cmd == P.CMD_WRITE:
                        dev.pwrite(view, offset, fua=bool(flags & P.CMD_FLAG_FUA))
                    elif cmd == P.CMD_FLUSH:
                        dev.flush()
                    elif cmd == P.CMD_TRIM:
                        dev.trim(offset, length)
                        if flags & P.CMD_FLAG_FUA:
                            dev.flush()
                    elif cmd == P.CMD_WRITE_ZEROES:
                        dev.zero(offset, length, may_trim=not flags & P.CMD_FLAG_NO_HOLE,
                                 fast=bool(flags & P.CMD_FLAG_FAST_ZERO))
                        if flags & P.CMD_FLAG_FUA:
                            dev.flush()
                    elif cmd == P.CMD_CACHE:
                        dev.cache(offset, length)
                    elif cmd == P.CMD_BLOCK_STATUS:
                        extents = dev.extents(offset, length)
            except DiskUnsupportedError as e:
                self.fail(cmd, cookie, ENOTSUP if flags & P.CMD_FLAG_FAST_ZERO else EINVAL, str(e))
                continue
            except DiskError as e:
                self.fail(cmd, cookie, known_errno(e.errno), str(e))
                continue
            except OSError as e:
                self.fail(cmd, cookie, EIO, str(e))
                continue
            if cmd == P.CMD_READ:
                if self.structured:
                    self.send(P.encode_offset_data(cookie, offset, length, True), view)
                else:
                    self.send(P.encode_simple_reply(cookie), view)
            elif cmd == P.CMD_BLOCK_STATUS:
                self.send(self.block_status_reply(cookie, offset, length, flags, extents))
            else:
                self.send(P.encode_simple_reply(cookie))

    def check(self, cmd, flags, offset, length, allowed, dev) -> int:
        known = {P.CMD_READ: P.CMD_FLAG_DF, P.CMD_WRITE: P.CMD_FLAG_FUA, P.CMD_FLUSH: 0,
                 P.CMD_TRIM: P.CMD_FLAG_FUA, P.CMD_CACHE: 0,
                 P.CMD_WRITE_ZEROES: P.CMD_FLAG_FUA | P.CMD_FLAG_NO_HOLE | P.CMD_FLAG_FAST_ZERO,
                 P.CMD_BLOCK_STATUS: P.CMD_FLAG_REQ_ONE}
        if cmd not in known or flags & ~known[cmd]:
            return EINVAL
        gate = {P.CMD_FLUSH: P.TFLAG_SEND_FLUSH, P.CMD_TRIM: P.TFLAG_SEND_TRIM,
                P.CMD_WRITE_ZEROES: P.TFLAG_SEND_WRITE_ZEROES, P.CMD_CACHE: P.TFLAG_SEND_CACHE}
        if cmd in (P.CMD_WRITE, P.CMD_TRIM, P.CMD_WRITE_ZEROES) and self.read_only:
            return EPERM
        if cmd in gate and not allowed & gate[cmd]:
            return EINVAL
        if flags & P.CMD_FLAG_FUA and not allowed & P.TFLAG_SEND_FUA:
            return EINVAL
        if cmd == P.CMD_BLOCK_STATUS and (not self.structured or not self.meta_ids):
            return EINVAL
        if cmd == P.CMD_FLUSH:
            return 0 if offset == 0 and length == 0 else EINVAL
        if length == 0:
            return EINVAL
        if offset + length > dev.size:
            return ENOSPC if cmd in (P.CMD_WRITE, P.CMD_WRITE_ZEROES) else EINVAL
        mn = self.block_sizes(dev)[0]
        if offset % mn or length % mn:
            return EINVAL
        if cmd == P.CMD_READ and length > self.max_payload:
            return EOVERFLOW if flags & P.CMD_FLAG_DF else EINVAL
        return 0

    def fail(self, cmd: int, cookie: int, error: int, message: str = "") -> None:
        if self.structured and cmd in (P.CMD_READ, P.CMD_BLOCK_STATUS):
            self.send(P.encode_error_chunk(cookie, error, message[:200]))
        else:
            self.send(P.encode_simple_reply(cookie, error))

    def block_status_reply(self, cookie, offset, length, flags, extents) -> bytes:
        out: list[tuple[int, int]] = []
        end = offset + length
        for e in extents:
            if e.offset >= end or not e.length:
                break
            n = min(e.length, end - e.offset, 0xFFFFFFFF)
            f = e.flags & (P.STATE_HOLE | P.STATE_ZERO)   # a device's extent flags are these bits
            if out and out[-1][1] == f and out[-1][0] + n <= 0xFFFFFFFF:
                out[-1] = (out[-1][0] + n, f)
            else:
                out.append((n, f))
            if len(out) >= _MAX_EXTENTS or flags & P.CMD_FLAG_REQ_ONE and len(out) > 1:
                break
        if flags & P.CMD_FLAG_REQ_ONE:
            out = out[:1]
        if not out:
            out = [(length, 0)]
        return P.encode_block_status(cookie, _BASE_ALLOCATION_ID, out)

    def run(self) -> None:
        try:
            # A client that connects and says nothing must not hold a thread forever;
            # once transmission starts, an idle client is normal (the guest may sit at a prompt).
            self.sock.settimeout(self.server.handshake_timeout)
            self.handshake()
            self.sock.settimeout(None)
            self.transmission()
        except (_Disconnect, OSError, NbdError):
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass


def _file_id(path: str):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class NbdServer:
    def __init__(self, exports: BlockDevice | dict[str, BlockDevice], *, host: str = "127.0.0.1",
                 port: int = 0, unix: str | None = None, read_only: bool = False, structured: bool = True,
                 handshake_timeout: float = 30.0):
        self.exports = dict(exports) if isinstance(exports, Mapping) else {"": exports}
        if not self.exports:
            raise ValueError("no exports to serve")
        self.host, self.port, self.unix = host, port, unix
        self.read_only = read_only
        self.structured_ok = structured
        self.handshake_timeout = handshake_timeout
        self.address = None
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def lookup(self, name: str) -> BlockDevice | None:
        if name in self.exports:
            return self.exports[name]
        if name == "":
            return next(iter(self.exports.values()))
        return None

    def lock_for(self, dev: BlockDevice) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(id(dev), threading.Lock())

    @property
    def uri(self) -> str:
        return self.uri_for("")

    def uri_for(self, name: str) -> str:
        if self.unix:
            return str(NbdUri(socket=self.unix, export=name))
        host, port = self.address[:2]
        return str(NbdUri(host=host, port=port, export=name))

    def start(self):
        if self.unix:
            remove_stale_socket(self.unix)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(self.unix)
            except BaseException:
                sock.close()
                raise
            self._socket_id = _file_id(self.unix)
            self.address = self.unix
        else:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            self.address = sock.getsockname()[:2]
        sock.listen(16)
        self._listener = sock
        self._stopped.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="nbd-server", daemon=True)
        self._thread.start()
        return self.address

    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._stopped.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._guard:
                self._conns.add(sock)
            threading.Thread(target=self._serve, args=(sock,), name="nbd-conn", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            _Conn(self, sock).run()
        finally:
            with self._guard:
                self._conns.discard(sock)

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._guard:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self.unix and getattr(self, "_socket_id", None) is not None and _file_id(self.unix) == self._socket_id:
            try:
                os.unlink(self.unix)   # ours still: a server started over it since would keep its own
            except OSError:
                pass
            self._socket_id = None

    def serve_forever(self) -> None:
        if self._listener is None:
            self.start()
        try:
            self._stopped.wait()
        finally:
            self.stop()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
