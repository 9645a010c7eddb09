"""Faults: servers that die, stall, fail requests, or lie."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbdboot.disk.nbd import NbdDevice
from nbdboot.disk.open import open_store
from nbdboot.nbd import protocol as P
from nbdboot.nbd.client import NbdClient
from nbdboot.nbd.errors import (
    EIO,
    ENOSPC,
    NbdChangedError,
    NbdCommandError,
    NbdConnectionError,
    NbdError,
    NbdProtocolError,
    NbdTimeoutError,
)
from support.badnbd import recv_exactly
from support.servers import free_port, wait_for_port

MiB = 1 << 20


def _pattern(offset: int, length: int) -> bytes:
    start = offset - offset % 8
    words = b"".join(struct.pack(">Q", o) for o in range(start, offset + length + 8, 8))
    return words[offset - start:offset - start + length]


class Nbdkit:
    """An nbdkit we can kill and start again on the same port."""

    def __init__(self, *args, port=None):
        self.args, self.port, self.proc = args, port or free_port(), None

    def start(self, *args):
        self.proc = subprocess.Popen(["nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1",
                                      "-p", str(self.port), *(args or self.args)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)
        return self

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    @property
    def uri(self):
        return f"nbd://127.0.0.1:{self.port}"


@pytest.fixture
def killable():
    servers = []

    def make(*args):
        s = Nbdkit(*args)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        if s.proc and s.proc.poll() is None:
            s.kill()


def _transfer_while_restarting(server, work, after=0.3, down_for=0.5):
    """Run work() in a thread; kill the server after `after` s and restart it
    `down_for` s later. The restart happens here, in the main thread, because
    nbdkit --exit-with-parent dies with the thread that started it."""
    result = {}

    def run():
        try:
            result["value"] = work()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            result["error"] = e
    t = threading.Thread(target=run)
    t.start()
    time.sleep(after)
    if not t.is_alive():
        raise AssertionError(f"transfer ended before the server was killed: {result}")
    server.kill()
    time.sleep(down_for)
    server.start()
    t.join(60)
    assert not t.is_alive()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def test_read_survives_server_killed_mid_transfer(killable):
    srv = killable("--filter=delay", "pattern", "64M", "rdelay=20ms")
    dev = NbdDevice(srv.uri, request_size=256 * 1024, in_flight=8, retry_delay=0.2, timeout=5)
    buf = bytearray(48 * MiB)
    try:
        _transfer_while_restarting(srv, lambda: dev.pread_into(buf, 4096))
        assert dev.client.reconnects >= 1
        assert buf == _pattern(4096, len(buf))
    finally:
        dev.close()


def test_write_survives_server_killed_mid_transfer(killable, tmp_path):
    img = tmp_path / "w.img"
    with open(img, "wb") as f:
        f.truncate(32 * MiB)
    srv = killable("--filter=delay", "file", str(img), "wdelay=50ms")
    dev = NbdDevice(srv.uri, request_size=256 * 1024, in_flight=8, retry_delay=0.2, timeout=5)
    data = os.urandom(28 * MiB)
    try:
        _transfer_while_restarting(srv, lambda: (dev.pwrite(data, 1000), dev.flush()))
        assert dev.client.reconnects >= 1
        assert dev.pread(len(data), 1000) == data
    finally:
        dev.close()
    assert img.read_bytes()[1000:1000 + len(data)] == data


def test_reconnect_refuses_a_changed_export(killable):
    srv = killable("pattern", "8M")
    c = NbdClient(srv.uri, retry_delay=0.1)
    c.pread(512, 0)
    srv.kill()
    srv.start("pattern", "16M")
    with pytest.raises(NbdChangedError, match="size"):
        c.pread(512, 0)
    with pytest.raises(NbdChangedError):
        c.pread(512, 0)  # dead stays dead


def test_reconnect_gives_up_after_its_budget(killable):
    srv = killable("memory", "1M")
    c = NbdClient(srv.uri, retries=3, retry_delay=0.05)
    srv.kill()
    t0 = time.monotonic()
    with pytest.raises(NbdConnectionError, match="3 reconnect attempts"):
        c.pread(512, 0)
    assert time.monotonic() - t0 < 5
    assert NbdConnectionError("x").exit_code == 3


def test_reset_reconnects_on_demand(killable):
    srv = killable("pattern", "1M")
    dev = NbdDevice(srv.uri)
    dev.reset()
    dev.reset()
    assert dev.client.reconnects == 2
    assert dev.pread(16, 800) == _pattern(800, 16)
    dev.close()


def test_a_device_reports_its_lost_connection_until_a_reset_reopens_it(killable, tmp_path):
    srv = killable("pattern", "1M")
    dev = NbdDevice(srv.uri, retries=2, retry_delay=0.05)
    store = open_store(dev, str(tmp_path / "target"), own_source=False)
    try:
        assert dev.lost_connection is None and store.lost_connection is None
        srv.kill()
        with pytest.raises(NbdConnectionError, match="2 reconnect attempts") as failed:
            store.pread(512, 0)
        assert dev.lost_connection is failed.value
        assert store.lost_connection is failed.value   # its blocks not yet local come over that connection
        srv.start()
        dev.reset()
        assert dev.lost_connection is None and store.lost_connection is None
        assert store.pread(16, 800) == _pattern(800, 16)
    finally:
        store.close()
        dev.close()


def test_error_filter_fails_requests_not_the_connection(nbdkit, tmp_path):
    trigger = tmp_path / "trigger"
    srv = nbdkit("--filter=error", "memory", "4M", "error=ENOSPC", "error-pwrite-rate=100%",
                 f"error-pwrite-file={trigger}", "error-pread-rate=100%", "error-pread=EIO",
                 f"error-pread-file={trigger}")
    with NbdClient(srv.uri) as c:
        c.pwrite(b"x" * 4096, 0)
        trigger.touch()
        with pytest.raises(NbdCommandError) as e:
            c.pwrite(b"y" * 4096, 0)
        assert e.value.errno == ENOSPC
        with pytest.raises(NbdCommandError) as e:
            c.pread(4096, 0)
        assert e.value.errno == EIO and e.value.exit_code == 3
        # many in flight, all failing, each reported on its own
        bufs = [bytearray(512) for _ in range(16)]
        cmds = [c.aio_pread(b, i * 512) for i, b in enumerate(bufs)]
        failed = 0
        for cmd in cmds:
            try:
                c.wait(cmd)
            except NbdCommandError:
                failed += 1
        assert failed == 16
        trigger.unlink()
        assert c.pread(4096, 0) == b"x" * 4096


def test_stalled_server_times_out(nbdkit):
    srv = nbdkit("--filter=delay", "memory", "1M", "rdelay=10")
    c = NbdClient(srv.uri, timeout=0.5, retries=2, retry_delay=0.05)
    t0 = time.monotonic()
    with pytest.raises(NbdConnectionError):
        c.pread(512, 0)
    assert time.monotonic() - t0 < 6
    c2 = NbdClient(srv.uri, timeout=0.3, reconnect=False)
    with pytest.raises(NbdTimeoutError):
        c2.pread(512, 0)


def test_connect_timeout_and_refused():
    port = free_port()
    with pytest.raises(NbdConnectionError, match="refused"):
        NbdClient(f"nbd://127.0.0.1:{port}")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)   # accepts, never greets
    try:
        t0 = time.monotonic()
        with pytest.raises(NbdTimeoutError):
            NbdClient(f"nbd://127.0.0.1:{listener.getsockname()[1]}", connect_timeout=0.3)
        assert time.monotonic() - t0 < 3
    finally:
        listener.close()


# -- a lying server ------------------------------------------------------------------------

class FakeServer:
    """Negotiates correctly (structured replies, base:allocation, GO), then answers
    each request with whatever `respond(flags, cmd, cookie, offset, length)` returns
    (bytes, or None to stall)."""

    def __init__(self, respond, size=1 * MiB, flags=P.TFLAG_HAS_FLAGS | P.TFLAG_SEND_FLUSH, structured=True):
        self.respond, self.size, self.flags, self.structured = respond, size, flags, structured
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.uri = f"nbd://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            s, _ = self.listener.accept()
        except OSError:
            return
        try:
            s.sendall(P.encode_newstyle_greeting())
            recv_exactly(s, 4)
            while True:
                opt, n = P.decode_option_header(recv_exactly(s, 16))
                recv_exactly(s, n)
                if opt == P.OPT_STRUCTURED_REPLY and self.structured:
                    s.sendall(P.encode_option_reply(opt, P.REP_ACK))
                elif opt == P.OPT_SET_META_CONTEXT and self.structured:
                    s.sendall(P.encode_option_reply(opt, P.REP_META_CONTEXT, P.encode_rep_meta_context(1, "base:allocation"))
                              + P.encode_option_reply(opt, P.REP_ACK))
                elif opt == P.OPT_GO:
                    info = struct.pack(">HQH", P.INFO_EXPORT, self.size, self.flags)
                    s.sendall(P.encode_option_reply(opt, P.REP_INFO, info) + P.encode_option_reply(opt, P.REP_ACK))
                    break
                else:
                    s.sendall(P.encode_option_reply(opt, P.REP_ERR_UNSUP))
            while True:
                req = P.decode_request(recv_exactly(s, 28))
                if req[1] == P.CMD_WRITE:
                    recv_exactly(s, req[4])
                if req[1] == P.CMD_DISC:
                    return
                out = self.respond(*req)
                if out is None:
                    time.sleep(30)
                    return
                s.sendall(out)
        except (EOFError, OSError):
            pass
        finally:
            s.close()

    def close(self):
        self.listener.close()


@pytest.mark.parametrize("name, respond, match", [
    ("bad magic", lambda f, c, k, o, n: b"\xde\xad\xbe\xef" + bytes(16), "magic"),
    ("unknown cookie", lambda f, c, k, o, n: P.encode_offset_data(k + 1, o, n, True) + bytes(n), "unknown cookie"),
    ("chunk before the request", lambda f, c, k, o, n: P.encode_offset_data(k, o - 8, n, True) + bytes(n), "outside"),
    ("offset wraps", lambda f, c, k, o, n: P.encode_offset_data(k, (1 << 64) - 8, 8, True) + bytes(8), "outside"),
    ("chunk past the request", lambda f, c, k, o, n: P.encode_offset_data(k, o + 8, n, True) + bytes(n), "OFFSET_DATA"),
    ("short read", lambda f, c, k, o, n: P.encode_offset_data(k, o, n // 2, True) + bytes(n // 2), "answered with"),
    ("overlap", lambda f, c, k, o, n: P.encode_offset_data(k, o, n, False) + bytes(n)
     + P.encode_offset_hole(k, o, 8, True), "overlapping"),
    ("oversized chunk", lambda f, c, k, o, n: P.encode_chunk_header(k, P.REPLY_TYPE_OFFSET_DATA, 1 << 31, True),
     "OFFSET_DATA chunk of"),
    ("simple reply to READ", lambda f, c, k, o, n: P.encode_simple_reply(k) + bytes(n), "simple reply"),
])
def test_lying_server_gets_a_typed_error_and_buffer_stays_in_bounds(name, respond, match):
    srv = FakeServer(respond)
    try:
        c = NbdClient(srv.uri, reconnect=False, timeout=5)
        outer = bytearray(b"\xaa" * 3 * 4096)
        inner = memoryview(outer)[4096:8192]
        with pytest.raises(NbdProtocolError, match=match):
            c.pread_into(inner, 65536)
        assert outer[:4096] == b"\xaa" * 4096 and outer[8192:] == b"\xaa" * 4096
        with pytest.raises(NbdProtocolError):
            c.pread(512, 0)  # the connection is dead, not desynchronised
        c.close()
    finally:
        srv.close()


def test_unnegotiated_structured_reply_is_rejected():
    srv = FakeServer(lambda f, c, k, o, n: P.encode_offset_data(k, o, n, True) + bytes(n), structured=False)
    try:
        c = NbdClient(srv.uri, reconnect=False, timeout=5)
        with pytest.raises(NbdProtocolError, match="structured"):
            c.pread(512, 0)
    finally:
        srv.close()


def test_export_size_of_2_63_is_rejected():
    srv = FakeServer(lambda *a: b"", size=1 << 63)
    try:
        with pytest.raises(NbdProtocolError, match="2\\^63"):
            NbdClient(srv.uri, reconnect=False, timeout=5)
    finally:
        srv.close()


def test_stall_after_negotiation_times_out_without_reconnect():
    srv = FakeServer(lambda *a: None)
    try:
        c = NbdClient(srv.uri, reconnect=False, timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(NbdTimeoutError):
            c.pread(512, 0)
        assert time.monotonic() - t0 < 3
    finally:
        srv.close()


@settings(max_examples=25, deadline=None)
@given(junk=st.binary(min_size=1, max_size=200), structured=st.booleans(), cmd=st.sampled_from(["read", "write", "bs"]))
def test_random_replies_give_typed_errors_never_anything_else(junk, structured, cmd):
    """Whatever a server answers, the client raises one of our typed errors (or,
    by luck, succeeds), within its timeout, and never writes outside the buffer."""
    srv = FakeServer(lambda *a: junk, structured=structured,
                     flags=P.TFLAG_HAS_FLAGS | P.TFLAG_SEND_FLUSH)
    try:
        c = NbdClient(srv.uri, reconnect=False, timeout=0.2)
        outer = bytearray(b"\xaa" * 1536)
        try:
            if cmd == "read":
                c.pread_into(memoryview(outer)[512:1024], 4096)
            elif cmd == "write":
                c.pwrite(b"w" * 512, 4096)
            elif c.can_block_status:
                c.block_status(0, 65536)
        except (NbdError, NbdCommandError):
            pass
        assert outer[:512] == b"\xaa" * 512 and outer[1024:] == b"\xaa" * 512
        c.close()
    finally:
        srv.close()
