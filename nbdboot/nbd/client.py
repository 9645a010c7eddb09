"""A blocking NBD client: sockets and TLS around the sans-IO protocol layer.

API
    client = NbdClient(uri, *, meta_contexts=("base:allocation",), structured=True,
                       connect_timeout=15, timeout=15, reconnect=True, retries=10,
                       retry_delay=5, backoff=1.0, max_retry_delay=60,
                       tls_certificates=None)
    client.size / .flags / .block_sizes / .structured / .contexts / .protocol /
          .export_name / .description / .read_only / .can_flush ... can_multi_conn
    # synchronous, one request each (the caller splits; see disk/nbd.py):
    client.pread_into(buf, offset)      client.pread(length, offset) -> bytes
    client.pwrite(data, offset, fua=False)          client.flush()
    client.trim(offset, length, fua=False)          client.cache(offset, length)
    client.zero(offset, length, no_hole=False, fast=False, fua=False)
    client.block_status(offset, length, req_one=False) -> {context name: [(length, flags)]}
    # pipelined: any number in flight, replies matched by cookie
    cmd = client.aio_pread(buf, offset) / aio_pwrite(data, offset, fua) / aio_zero(...) /
          aio_trim(...) / aio_flush() / aio_cache(...) / aio_block_status(...)
    client.wait(cmd)          # until cmd is answered; raises its NbdCommandError
    client.next_completed()   # answer replies until some command finishes; returns it
    client.in_flight          # number of unanswered commands
    client.reconnect()        # close and renegotiate now (int 13h AH=00h)
    client.close()            # DISC, shutdown(SHUT_WR), close
    list_exports(uri) -> [(name, description)]
    list_meta_contexts(uri, queries=()) -> [names]

Reads land straight in the caller's buffer (recv_into a memoryview slice the
protocol layer has bounds-checked). Sending never blocks while the server has
replies for us: a write that does not fit the socket buffer alternates with
reading replies, so a large WRITE cannot deadlock against a server that is
busy answering earlier READs.

When the connection drops or a command sees no reply for `timeout` seconds,
the client reopens it (first at once, then every retry_delay seconds, times
backoff, up to `retries` tries, as iPXE's SAN layer does), renegotiates,
insists that size, flags and block sizes are unchanged and re-sends every
command not yet answered. Protocol violations are not retried: the server
cannot be trusted, so they raise NbdProtocolError.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time

from nbdboot import interrupt
from nbdboot.errors import DiskRangeError, DiskReadOnlyError, DiskUnsupportedError
from nbdboot.nbd import handshake as H
from nbdboot.nbd import protocol as P
from nbdboot.nbd.errors import (
    ENOTCONN,
    ERRNO_NAMES,
    ESHUTDOWN,
    NbdChangedError,
    NbdCommandError,
    NbdConnectionError,
    NbdError,
    NbdNegotiationError,
    NbdProtocolError,
    NbdTimeoutError,
    NbdTLSError,
)
from nbdboot.nbd.handshake import Export
from nbdboot.nbd.uri import NbdUri, parse_uri

_RX_SIZE = 256 * 1024
# Called with (client, text) when a client starts reconnecting ("reconnecting (try 3/10)") and with
# (client, None) once it is back: progress bars and status lines show it instead of a falling speed.
status_listeners: list = []
_OUTQ_MAX = 256          # queued request headers (7 KiB) before we send without waiting
_ZEROS = bytes(1 << 20)


class Command(P.Request):
    """A request in flight: what it reads into or writes from."""

    __slots__ = ("buf", "data")

    def __init__(self, cmd, offset=0, length=0, flags=0, buf=None, data=None):
        super().__init__(cmd, offset, length, flags)
        self.buf = buf
        self.data = data

    def check(self) -> None:
        if self.error:
            name = ERRNO_NAMES.get(self.error, str(self.error))
            what = P.CMD_NAMES.get(self.cmd, str(self.cmd))
            msg = f"server failed {what} {self.offset}+{self.length}: {name}"
            raise NbdCommandError(msg + (f" ({self.message})" if self.message else ""), self.error)


# =============================================================================
# Socket plumbing
# =============================================================================

class _Link:
    """One connected socket with a small receive buffer for headers."""

    def __init__(self, sock, timeout: float):
        self.sock = sock
        self.timeout = timeout
        # Blocking calls wake every TICK to look for signals and the run's deadline (interrupt.check);
        # `timeout` is how long the server may stay silent, counted across those wake-ups.
        sock.settimeout(interrupt.TICK)
        # ssl costs ~5 ms to import and only nbds:// needs it: without it, no socket is TLS.
        ssl = sys.modules.get("ssl")
        self.tls = ssl is not None and isinstance(sock, ssl.SSLSocket)
        self.rx = bytearray(_RX_SIZE)
        self.mv = memoryview(self.rx)
        self.start = 0
        self.end = 0

    def _recv_into(self, view) -> int:
        silent_since = None
        while True:
            try:
                n = self.sock.recv_into(view)
                break
            except (socket.timeout, TimeoutError):
                now = time.monotonic()
                if silent_since is None:
                    silent_since = now - interrupt.TICK
                interrupt.check()
                if now - silent_since >= self.timeout:
                    raise NbdTimeoutError(f"no data from the server for {self.timeout:g} s") from None
            except OSError as e:
                raise self._lost(e) from None
        if n == 0:
            raise NbdConnectionError("server closed the connection")
        return n

    def take(self, n: int) -> memoryview:
        """The next n (<= 256 KiB) bytes, valid until the next call."""
        if self.end - self.start < n:
            left = self.end - self.start
            if left:
                self.rx[:left] = bytes(self.mv[self.start:self.end])
            self.start, self.end = 0, left
            while self.end < n:
                self.end += self._recv_into(self.mv[self.end:])
        v = self.mv[self.start:self.start + n]
        self.start += n
        return v

    def read_bytes(self, n: int) -> bytes:
        if n <= _RX_SIZE:
            return bytes(self.take(n))
        out = bytearray(n)
        self.into(memoryview(out))
        return bytes(out)

    def into(self, target: memoryview) -> None:
        """Fill target exactly, buffered bytes first, then straight from the socket."""
        have = min(self.end - self.start, len(target))
        if have:
            target[:have] = self.mv[self.start:self.start + have]
            self.start += have
        got = have
        total = len(target)
        while got < total:
            got += self._recv_into(target[got:])

    # -- the io ReplyTracker.read_reply reads replies through -----------------------------------------
    def read_data(self, req: Command, start: int, n: int) -> None:
        self.into(req.buf[start:start + n])

    def read_hole(self, req: Command, start: int, n: int) -> None:
        buf = req.buf
        while n:
            k = min(n, len(_ZEROS))
            buf[start:start + k] = _ZEROS[:k]
            start += k
            n -= k

    def extents(self, req: Command, context_id: int, extents) -> None:
        pass  # kept in req.extents

    def failed(self, req: Command, errno: int, message: str, offset) -> None:
        pass  # kept in req.error and req.message

    def buffered(self) -> bool:
        return self.end > self.start or (self.tls and self.sock.pending() > 0)

    def send(self, *parts, on_readable=None) -> None:
        """Send every part; while the socket is full, let on_readable drain replies."""
        views = [memoryview(p).cast("B") for p in parts if len(p)]
        try:
            if self.tls:
                # A TLS record half sent cannot be resumed after a timeout: give sendall the whole wait.
                self.sock.settimeout(interrupt.remaining(self.timeout) or interrupt.TICK)
                try:
                    for v in views:
                        for i in range(0, len(v), 65536):
                            while on_readable is not None and self._readable(0):
                                on_readable()
                            self.sock.sendall(v[i:i + 65536])
                finally:
                    self.sock.settimeout(interrupt.TICK)
                return
            stalled_since = None
            while views:
                try:
                    n = self.sock.sendmsg(views, (), socket.MSG_DONTWAIT) if len(views) > 1 \
                        else self.sock.send(views[0], socket.MSG_DONTWAIT)
                except BlockingIOError:
                    n = 0
                P.drop_sent(views, n)
                if not views:
                    return
                r, w, _ = select.select([self.sock] if on_readable else [], [self.sock], [], interrupt.TICK)
                if not r and not w:
                    now = time.monotonic()
                    if stalled_since is None:
                        stalled_since = now - interrupt.TICK
                    interrupt.check()
                    if now - stalled_since >= self.timeout:
                        raise NbdTimeoutError(f"server accepted no data for {self.timeout:g} s")
                    continue
                stalled_since = None
                if r and not w:
                    on_readable()
        except (socket.timeout, TimeoutError):
            raise NbdTimeoutError(f"server accepted no data for {self.timeout:g} s") from None
        except OSError as e:
            raise self._lost(e) from None

    def _lost(self, e: OSError) -> NbdConnectionError:
        ssl = sys.modules.get("ssl") if self.tls else None
        if ssl is not None and isinstance(e, ssl.SSLError):
            return NbdConnectionError(f"TLS error: {e}")
        return NbdConnectionError(f"connection lost: {e.strerror or e}")

    def _readable(self, timeout: float) -> bool:
        if self.buffered():
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def close(self, how_graceful: bool = True) -> None:
        try:
            if how_graceful:
                if self.tls:
                    self.sock = self.sock.unwrap()
                self.sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):   # ssl.SSLError is an OSError
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def _connect_socket(uri: NbdUri, timeout: float):
    interrupt.check()
    timeout = interrupt.remaining(timeout) or interrupt.TICK
    try:
        if uri.is_unix:
            path = uri.socket  # a leading NUL (from %00) names an abstract socket
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((uri.host, uri.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (socket.timeout, TimeoutError):
        raise NbdTimeoutError(f"cannot connect to {uri}: timed out after {timeout:g} s") from None
    except OSError as e:
        raise NbdConnectionError(f"cannot connect to {uri}: {e.strerror or e}") from None
    return sock


def _tls_context(uri: NbdUri, certificates: str | None) -> ssl.SSLContext:
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    certdir = certificates or uri.tls_certificates
    if certdir:
        ca = os.path.join(certdir, "ca-cert.pem")
        cert = os.path.join(certdir, "client-cert.pem")
        key = os.path.join(certdir, "client-key.pem")
        try:
            if os.path.exists(ca):
                ctx.load_verify_locations(ca)
            if os.path.exists(cert) and os.path.exists(key):
                ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise NbdTLSError(f"cannot load TLS certificates from {certdir}: {e}") from None
    else:
        ctx.load_default_certs()
    if not uri.tls_verify_peer:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# =============================================================================
# Negotiation: the transport half (the machine is nbdboot.nbd.handshake)
# =============================================================================

def _start_tls(link: _Link, uri: NbdUri, certificates: str | None) -> _Link:
    import ssl
    ctx = _tls_context(uri, certificates)
    hostname = uri.tls_hostname or (uri.host if not uri.is_unix else "localhost")
    try:
        link.sock.settimeout(interrupt.remaining(link.timeout) or interrupt.TICK)
        tls_sock = ctx.wrap_socket(link.sock, server_hostname=hostname)
    except (ssl.SSLError, ssl.CertificateError) as e:
        raise NbdTLSError(f"TLS handshake failed: {e}") from None
    except (socket.timeout, TimeoutError):
        raise NbdTimeoutError("TLS handshake timed out") from None
    except OSError as e:
        raise NbdConnectionError(f"connection lost during TLS handshake: {e}") from None
    return _Link(tls_sock, link.timeout)


def _handshake(link: _Link, hs: H.ClientHandshake, uri: NbdUri, certificates: str | None):
    """Move bytes for hs until it has its result -> (link, TLS-wrapped if upgraded; actions left over)."""
    start = link
    actions: list = []
    try:
        while True:
            for action in actions:
                if action is H.UPGRADE_TLS:
                    link = _start_tls(link, uri, certificates)
                    actions += hs.tls_established()
                else:
                    link.send(action.data)
            if hs.result is not None:
                return link, []
            try:
                data = link.read_bytes(hs.needed)
            except NbdConnectionError as e:
                lost = hs.connection_lost(e)
                if lost is e:
                    raise
                raise lost from None
            actions = hs.receive(data)
            if hs.result is not None:
                return link, actions
    except BaseException:
        if link is not start:
            link.close(False)
        raise


def _end_listing(link: _Link, hs: H.ClientHandshake, actions: list) -> None:
    """Send ABORT if the machine says so and wait briefly for its ACK: a server may simply close."""
    try:
        for action in actions:
            link.send(action.data)
        if hs.state == H.AWAIT_ABORT_REPLY:
            link.sock.settimeout(1.0)
            hs.receive(link.take(hs.needed))
    except NbdError:
        pass


def _open(uri: NbdUri, *, connect_timeout: float, timeout: float, structured: bool,
          meta_contexts, certificates) -> tuple[_Link, Export]:
    link = _Link(_connect_socket(uri, connect_timeout), connect_timeout)
    hs = H.ClientHandshake(H.GOAL_EXPORT, uri.export, structured=structured, meta_contexts=meta_contexts,
                           tls=uri.tls)
    try:
        link, _ = _handshake(link, hs, uri, certificates)
    except BaseException:
        link.close(False)
        raise
    link.timeout = timeout
    return link, hs.result


def _listing(uri: str | NbdUri, goal: str, queries, timeout: float, certificates: str | None):
    u = parse_uri(uri) if isinstance(uri, str) else uri
    link = _Link(_connect_socket(u, timeout), timeout)
    hs = H.ClientHandshake(goal, u.export, queries=queries, tls=u.tls)
    try:
        link, actions = _handshake(link, hs, u, certificates)
        _end_listing(link, hs, actions)
        return hs.result
    finally:
        link.close(False)


def list_exports(uri: str | NbdUri, *, timeout: float = 15.0, tls_certificates: str | None = None):
    """[(name, description)] the server lists (NBD_OPT_LIST)."""
    return _listing(uri, H.GOAL_LIST, (), timeout, tls_certificates)


def list_meta_contexts(uri: str | NbdUri, queries=(), *, timeout: float = 15.0,
                       tls_certificates: str | None = None) -> list[str]:
    """Meta context names the server offers for the URI's export (LIST_META_CONTEXT)."""
    return _listing(uri, H.GOAL_LIST_META, list(queries), timeout, tls_certificates)


# =============================================================================
# The client
# =============================================================================

class NbdClient:
    def __init__(self, uri: str | NbdUri, *, export: str | None = None,
                 meta_contexts=(P.CONTEXT_BASE_ALLOCATION,), structured: bool = True,
                 connect_timeout: float = 15.0, timeout: float = 15.0,
                 reconnect: bool = True, retries: int = 10, retry_delay: float = 5.0,
                 backoff: float = 1.0, max_retry_delay: float = 60.0,
                 tls_certificates: str | None = None):
        self.uri = parse_uri(uri) if isinstance(uri, str) else uri
        if export is not None:
            self.uri = self.uri.with_export(export)
        self.meta_contexts = tuple(meta_contexts or ())
        self.want_structured = structured
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.auto_reconnect = reconnect
        self.retries = retries
        self.retry_delay = retry_delay
        self.backoff = backoff
        self.max_retry_delay = max_retry_delay
        self.tls_certificates = tls_certificates
        self.reconnects = 0
        self.status: str | None = None   # "reconnecting (try N/M)" while it is
        self._strikes = 0    # connection failures since a command last completed
        self._cookie = 0
        self._link: _Link | None = None
        self._dead: NbdError | None = None
        self._lost: NbdError | None = None   # _dead when the server or the network ended it
        self._closed = False
        self._order: dict[int, Command] = {}   # every unanswered command, in send order
        self._finished: dict[int, Command] = {}  # answered, not yet handed out by next_completed()
        self._outq: list = []                    # request headers not sent yet
        self._link, self.export = self._open()
        self._tracker = self._new_tracker()

    # -- negotiation results ------------------------------------------------------------------
    def _open(self):
        return _open(self.uri, connect_timeout=self.connect_timeout, timeout=self.timeout,
                     structured=self.want_structured, meta_contexts=self.meta_contexts,
                     certificates=self.tls_certificates)

    def _new_tracker(self) -> P.ReplyTracker:
        return P.ReplyTracker(self.export.structured, self.export.contexts, export_size=self.export.size)

    @property
    def size(self) -> int:
        return self.export.size

    @property
    def flags(self) -> int:
        return self.export.flags

    @property
    def block_sizes(self) -> P.BlockSizes:
        return self.export.block_sizes

    @property
    def structured(self) -> bool:
        return self.export.structured

    @property
    def contexts(self) -> dict[int, str]:
        return self.export.contexts

    @property
    def protocol(self) -> str:
        return self.export.protocol

    @property
    def export_name(self) -> str:
        return self.export.name

    @property
    def description(self) -> str:
        return self.export.description

    def _flag(self, bit: int) -> bool:
        return bool(self.export.flags & bit)

    read_only = property(lambda self: self._flag(P.TFLAG_READ_ONLY))
    can_flush = property(lambda self: self._flag(P.TFLAG_SEND_FLUSH))
    can_fua = property(lambda self: self._flag(P.TFLAG_SEND_FUA))
    can_trim = property(lambda self: self._flag(P.TFLAG_SEND_TRIM))
    can_zero = property(lambda self: self._flag(P.TFLAG_SEND_WRITE_ZEROES))
    can_fast_zero = property(lambda self: self._flag(P.TFLAG_SEND_FAST_ZERO))
    can_cache = property(lambda self: self._flag(P.TFLAG_SEND_CACHE))
    can_multi_conn = property(lambda self: self._flag(P.TFLAG_CAN_MULTI_CONN))
    can_df = property(lambda self: self._flag(P.TFLAG_SEND_DF))
    is_rotational = property(lambda self: self._flag(P.TFLAG_ROTATIONAL))

    def context_id(self, name: str) -> int | None:
        for cid, n in self.export.contexts.items():
            if n == name:
                return cid
        return None

    @property
    def can_block_status(self) -> bool:
        return self.export.structured and bool(self.export.contexts)

    @property
    def max_payload(self) -> int:
        mx = self.export.block_sizes.maximum
        return P.DEFAULT_MAX_BLOCK if mx == 0xFFFFFFFF else min(mx, 64 << 20)

    @property
    def lost(self) -> NbdError | None:
        """The error that ended the connection for good (the reconnect budget spent, a protocol violation,
        an export that changed); None while it works, again after reconnect() reopened it, once closed, and
        when an interrupt or a deadline of ours ended it."""
        return None if self._closed else self._lost

    @property
    def in_flight(self) -> int:
        """Commands not yet handed back (unanswered, or answered but not collected)."""
        return len(self._order) + len(self._finished)

    # -- submitting ----------------------------------------------------------------------------
    def _check(self, offset: int, length: int, write: bool = False, zero_ok: bool = False) -> None:
        if self._dead:
            raise self._dead
        if self._link is None:
            raise NbdConnectionError("client is closed")
        if write and self.read_only:
            raise DiskReadOnlyError("export is read-only")
        if offset < 0 or length < 0 or offset + length > self.export.size:
            raise DiskRangeError(f"range {offset}+{length} is outside the export ({self.export.size} bytes)")
        if length == 0 and not zero_ok:
            raise DiskRangeError("zero-length request")
        mn = self.export.block_sizes.minimum
        if mn > 1 and (offset % mn or length % mn):
            raise DiskRangeError(f"range {offset}+{length} is not aligned to the {mn}-byte minimum block")

    def _submit(self, c: Command) -> Command:
        self._cookie = (self._cookie + 1) & 0xFFFFFFFFFFFFFFFF or 1
        c.cookie = self._cookie
        self._tracker.add(c)
        self._order[c.cookie] = c
        head = P.encode_request(c.cmd, c.cookie, c.offset, c.length, c.flags)
        # Requests without payload wait in _outq until we are about to block on a
        # reply (or it fills up): one send for a burst of requests, not one each.
        self._outq.append(head)
        if c.data is not None:
            self._outq.append(c.data)
        elif len(self._outq) < _OUTQ_MAX:
            return c
        self._flush()
        return c

    def _flush(self) -> None:
        if self._outq:
            parts, self._outq = self._outq, []
            # After a reconnect _recover() has re-sent everything: nothing more to do.
            self._guarded(lambda: self._link.send(*parts, on_readable=self._read_one), once=True)

    def aio_pread(self, buf, offset: int, df: bool = False) -> Command:
        view = memoryview(buf).cast("B")
        self._check(offset, len(view))
        if len(view) > self.max_payload:
            raise DiskRangeError(f"read of {len(view)} bytes exceeds the server's {self.max_payload}-byte limit")
        flags = P.CMD_FLAG_DF if df and self.can_df else 0
        return self._submit(Command(P.CMD_READ, offset, len(view), flags, buf=view))

    def aio_pwrite(self, data, offset: int, fua: bool = False) -> Command:
        view = memoryview(data).cast("B")
        self._check(offset, len(view), write=True)
        if len(view) > self.max_payload:
            raise DiskRangeError(f"write of {len(view)} bytes exceeds the server's {self.max_payload}-byte limit")
        flags = self._fua(fua)
        return self._submit(Command(P.CMD_WRITE, offset, len(view), flags, data=view))

    def _fua(self, fua: bool) -> int:
        return P.CMD_FLAG_FUA if fua and self.can_fua else 0

    def _need(self, ok: bool, what: str) -> None:
        if not ok:
            raise DiskUnsupportedError(f"server does not support {what}")

    def aio_flush(self) -> Command:
        self._check(0, 0, zero_ok=True)
        self._need(self.can_flush, "FLUSH")
        return self._submit(Command(P.CMD_FLUSH))

    def aio_trim(self, offset: int, length: int, fua: bool = False) -> Command:
        self._check(offset, length, write=True)
        self._need(self.can_trim, "TRIM")
        return self._submit(Command(P.CMD_TRIM, offset, length, self._fua(fua)))

    def aio_zero(self, offset: int, length: int, no_hole: bool = False, fast: bool = False,
                 fua: bool = False) -> Command:
        self._check(offset, length, write=True)
        self._need(self.can_zero, "WRITE_ZEROES")
        if fast:
            self._need(self.can_fast_zero, "fast zeroing")
        flags = self._fua(fua) | (P.CMD_FLAG_NO_HOLE if no_hole else 0) | (P.CMD_FLAG_FAST_ZERO if fast else 0)
        return self._submit(Command(P.CMD_WRITE_ZEROES, offset, length, flags))

    def aio_cache(self, offset: int, length: int) -> Command:
        self._check(offset, length)
        self._need(self.can_cache, "CACHE")
        return self._submit(Command(P.CMD_CACHE, offset, length))

    def aio_block_status(self, offset: int, length: int, req_one: bool = False) -> Command:
        self._check(offset, length)
        self._need(self.can_block_status, "block status (no meta context negotiated)")
        return self._submit(Command(P.CMD_BLOCK_STATUS, offset, min(length, 0xFFFFFFFF),
                                    P.CMD_FLAG_REQ_ONE if req_one else 0))

    # -- completing ------------------------------------------------------------------------------
    def _read_one(self) -> Command | None:
        """Read one reply (or chunk) from the wire; the command it finished, if any."""
        link, t = self._link, self._tracker
        if self._outq and link.end - link.start < P.REPLY_PREFIX_SIZE:
            parts, self._outq = self._outq, []   # about to block: the server needs these first
            link.send(*parts, on_readable=self._read_one)
        req = t.read_reply(link)
        return None if req is None else self._complete(req)

    def _complete(self, req: Command) -> Command:
        if req.error == ESHUTDOWN and self.auto_reconnect:
            # The server is going away without doing it (nbdkit on SIGTERM): like a dropped connection, the
            # request goes again on the next one, within the reconnect budget.
            raise NbdConnectionError("server is shutting down (ESHUTDOWN)")
        del self._order[req.cookie]
        self._finished[req.cookie] = req
        self._strikes = 0
        return req

    def next_completed(self) -> Command:
        """The oldest answered command not handed out yet, reading replies if none (errors not raised)."""
        while not self._finished:
            if not self._order:
                raise ValueError("no command in flight")
            self._guarded(self._read_one)
        cookie = next(iter(self._finished))
        return self._finished.pop(cookie)

    def wait(self, cmd: Command) -> Command:
        while not cmd.done:
            if cmd.cookie not in self._order:
                break
            self._guarded(self._read_one)
        self._finished.pop(cmd.cookie, None)
        cmd.check()
        return cmd

    def wait_all(self) -> None:
        first_error = None
        while self._order or self._finished:
            c = self.next_completed()
            if c.error and first_error is None:
                first_error = c
        if first_error is not None:
            first_error.check()

    # -- synchronous API ----------------------------------------------------------------------------
    def pread_into(self, buf, offset: int) -> None:
        if len(buf):
            self.wait(self.aio_pread(buf, offset))

    def pread(self, length: int, offset: int) -> bytes:
        buf = bytearray(length)
        self.pread_into(buf, offset)
        return bytes(buf)

    def pwrite(self, data, offset: int, fua: bool = False) -> None:
        if len(data):
            self.wait(self.aio_pwrite(data, offset, fua))

    def flush(self) -> None:
        self.wait(self.aio_flush())

    def trim(self, offset: int, length: int, fua: bool = False) -> None:
        if length:
            self.wait(self.aio_trim(offset, length, fua))

    def zero(self, offset: int, length: int, no_hole: bool = False, fast: bool = False,
             fua: bool = False) -> None:
        if length:
            self.wait(self.aio_zero(offset, length, no_hole, fast, fua))

    def cache(self, offset: int, length: int) -> None:
        if length:
            self.wait(self.aio_cache(offset, length))

    def block_status(self, offset: int, length: int, req_one: bool = False) -> dict[str, list]:
        cmd = self.wait(self.aio_block_status(offset, length, req_one))
        return {self.export.contexts[cid]: ext for cid, ext in cmd.extents.items()}

    # -- failure, reconnect, shutdown ------------------------------------------------------------------
    def _guarded(self, fn, once: bool = False):
        """Run fn; on a dropped or stalled connection, reconnect, re-send, and run it again."""
        while True:
            if self._dead:
                raise self._dead
            try:
                return fn()
            except NbdProtocolError as e:
                self._die(e)
                raise
            except NbdConnectionError as e:
                self._strikes += 1
                if not self.auto_reconnect or self._link is None:
                    self._die(e)
                    raise
                if self._strikes > self.retries:
                    # the server answers the reopen but never the command: stop re-sending
                    err = NbdConnectionError(f"gave up after {self.retries} retries: {e}")
                    self._die(err)
                    raise err from None
                self._recover(e)
                if once:
                    return None
            except (KeyboardInterrupt, interrupt.DeadlineReached, interrupt.Cancelled) as e:
                # A reply may be half read: the connection cannot be used again, only closed.
                if not self._dead:
                    self._die(NbdConnectionError(f"interrupted: {type(e).__name__}"), lost=False)
                raise

    def _die(self, why: NbdError, lost: bool = True) -> None:
        """End the connection; `lost` unless we ended it ourselves (an interrupt, a deadline)."""
        self._dead = why
        self._lost = why if lost else None
        self._outq = []
        for c in list(self._order.values()):
            if not c.done:
                c.error = c.error or ENOTCONN
                c.message = str(why)
                c.done = True
        self._order.clear()
        if self._link is not None:
            self._link.close(False)

    def _recover(self, why: NbdError) -> None:
        """Reopen with bounded retries; NbdError (why) if the budget runs out."""
        try:
            self._reopen(why)
        finally:
            if self.status is not None:
                self._report(None)

    def _reopen(self, why: NbdError) -> None:
        if self._link is not None:
            self._link.close(False)
        last: Exception = why
        delay = self.retry_delay
        for attempt in range(self.retries):
            if attempt:
                interrupt.sleep(delay)
                delay = min(delay * self.backoff, self.max_retry_delay)
            self._report(f"reconnecting (try {attempt + 1}/{self.retries})")
            try:
                link, info = self._open()
            except (NbdConnectionError, NbdNegotiationError) as e:
                last = e
                continue
            except NbdError as e:
                self._link = None
                self._die(e)
                raise
            if not info.same_shape(self.export):
                link.close(False)
                err = NbdChangedError(
                    f"export changed across reconnect: size {self.export.size}->{info.size}, "
                    f"flags {self.export.flags:#x}->{info.flags:#x}")
                self._die(err)
                raise err
            self._link, self.export = link, info
            self._tracker = self._new_tracker()
            self._outq = []  # everything unanswered is re-sent below
            self.reconnects += 1
            try:
                for c in list(self._order.values()):
                    c.reset()
                    self._tracker.add(c)
                    self._link.send(P.encode_request(c.cmd, c.cookie, c.offset, c.length, c.flags),
                                    c.data if c.data is not None else b"", on_readable=self._read_one)
            except NbdConnectionError as e:
                last = e
                self._link.close(False)
                continue
            except NbdProtocolError as e:
                self._die(e)
                raise
            return
        err = NbdConnectionError(f"gave up after {self.retries} reconnect attempts: {last}")
        self._link = None
        self._die(err)
        raise err

    def _report(self, text: str | None) -> None:
        self.status = text
        for listener in list(status_listeners):
            listener(self, text)

    def reconnect(self) -> None:
        """Drop the connection and negotiate a fresh one now; unanswered commands are re-sent. Also after the
        reconnect budget ran out: a guest's int 13h reset tries again, as iPXE's sandev_reset reopens."""
        if self._closed:
            raise NbdConnectionError("client is closed")
        self._dead = self._lost = None
        self._strikes = 0
        self._recover(NbdConnectionError("reset requested"))

    def close(self) -> None:
        """Drain what is in flight, send DISC, shut down our side, close."""
        self._closed = True
        if self._link is None:
            return
        graceful = self._dead is None
        if graceful:
            self.auto_reconnect = False
            try:
                while self._order:
                    self._read_one()
                self._finished.clear()
                self._link.send(P.encode_request(P.CMD_DISC, 0))
            except NbdError:
                graceful = False
        link, self._link = self._link, None
        if link is not None:
            link.close(graceful)
        if self._dead is None:
            self._dead = NbdConnectionError("client is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        link = getattr(self, "_link", None)
        if link is not None:
            link.close(False)

