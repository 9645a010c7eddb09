"""The embedded server against other clients, and against clients that misbehave."""

from __future__ import annotations

import os
import socket
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbdboot.disk.file import FileDevice
from nbdboot.nbd import protocol as P
from nbdboot.nbd.client import NbdClient
from nbdboot.nbd.errors import EINVAL, ENOSPC, EPERM, NbdCommandError
from nbdboot.nbd.server import NbdServer
from support.servers import require_tool

MiB = 1 << 20


@pytest.fixture
def served(tmp_path):
    img = tmp_path / "s.img"
    dev = FileDevice(img, create_size=8 * MiB)
    srv = NbdServer({"disk": dev})
    srv.start()
    yield srv, img
    srv.stop()
    dev.close()


def test_qemu_io_and_qemu_img_against_our_server(served, tmp_path):
    require_tool("qemu-io")
    require_tool("qemu-img")
    srv, img = served
    uri = srv.uri_for("disk")
    subprocess.run(["qemu-io", "-f", "raw", uri, "-c", "write -P 0x42 1M 64k", "-c", "write -z 2M 64k",
                    "-c", "discard 3M 64k", "-c", "flush", "-c", "read -P 0x42 1M 64k"],
                   check=True, capture_output=True)
    out = tmp_path / "conv.raw"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, str(out)], check=True)
    assert out.read_bytes() == img.read_bytes()
    assert img.read_bytes()[MiB:MiB + 65536] == b"\x42" * 65536
    mapped = subprocess.run(["qemu-img", "map", "--output=json", "-f", "raw", uri], check=True,
                            capture_output=True, text=True).stdout
    assert '"data": true' in mapped and '"data": false' in mapped


def test_server_refuses_what_it_must(tmp_path):
    ro = FileDevice(tmp_path / "ro.img", create_size=MiB)
    ro.close()
    ro = FileDevice(tmp_path / "ro.img", read_only=True)
    with NbdServer({"ro": ro}, read_only=True) as srv:
        with NbdClient(srv.uri_for("ro")) as c:
            assert c.read_only and not c.can_trim and not c.can_zero
            c._check = lambda *a, **k: None  # let illegal requests reach the wire
            for call, errno in [(lambda: c.pwrite(b"x" * 512, 0), EPERM),
                                (lambda: c.pread(512, MiB), EINVAL),
                                (lambda: c.pread(512, (1 << 63) - 1), EINVAL)]:
                with pytest.raises(NbdCommandError) as e:
                    call()
                assert e.value.errno == errno
            assert c.pread(512, 0) == bytes(512)  # still serving
    ro.close()
    rw = FileDevice(tmp_path / "rw.img", create_size=MiB)
    with NbdServer(rw) as srv, NbdClient(srv.uri) as c:
        c._check = lambda *a, **k: None
        with pytest.raises(NbdCommandError) as e:
            c.pwrite(b"x" * 512, MiB)
        assert e.value.errno == ENOSPC
        c.pwrite(b"y" * 512, MiB - 512)
    rw.close()


def _raw_connect(srv):
    s = socket.create_connection(srv.address, timeout=5)
    assert s.recv(18, socket.MSG_WAITALL)[:16] == struct.pack(">QQ", P.NBDMAGIC, P.IHAVEOPT)
    return s


def _recv_all(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_server_option_errors_and_abort(served):
    srv, _ = served
    s = _raw_connect(srv)
    s.sendall(struct.pack(">I", P.FLAG_C_FIXED_NEWSTYLE))
    s.sendall(P.encode_option(12345, b"junk"))
    reply = P.decode_option_reply_header(_recv_all(s, 20), 12345)
    assert reply.type == P.REP_ERR_UNSUP
    _recv_all(s, reply.length)
    s.sendall(P.encode_option(P.OPT_GO, P.encode_info_request("nope")))
    reply = P.decode_option_reply_header(_recv_all(s, 20), P.OPT_GO)
    assert reply.type == P.REP_ERR_UNKNOWN
    _recv_all(s, reply.length)
    s.sendall(P.encode_option(P.OPT_SET_META_CONTEXT, P.encode_meta_query("disk", ["base:allocation"])))
    reply = P.decode_option_reply_header(_recv_all(s, 20), P.OPT_SET_META_CONTEXT)
    assert reply.type == P.REP_ERR_INVALID  # structured replies first
    _recv_all(s, reply.length)
    s.sendall(P.encode_option(P.OPT_ABORT))
    assert P.decode_option_reply_header(_recv_all(s, 20), P.OPT_ABORT).type == P.REP_ACK
    assert s.recv(1) == b""
    s.close()


def test_server_drops_unknown_client_flags(served):
    srv, _ = served
    s = _raw_connect(srv)
    s.sendall(struct.pack(">I", 0x80))
    assert s.recv(1) == b""
    s.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.booleans())
def test_server_survives_garbage(served, junk, after_go):
    """Any bytes from a client end that client's session at worst; others are served on."""
    srv, _ = served
    s = _raw_connect(srv)
    if after_go:
        s.sendall(struct.pack(">I", P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES))
        s.sendall(P.encode_option(P.OPT_GO, P.encode_info_request("disk")))
        while True:
            r = P.decode_option_reply_header(_recv_all(s, 20), P.OPT_GO)
            _recv_all(s, r.length)
            if r.type == P.REP_ACK:
                break
    try:
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        while s.recv(65536):
            pass
    except OSError:
        pass  # the server may hang up first
    s.close()
    with NbdClient(srv.uri_for("disk"), reconnect=False, timeout=5) as c:
        c.pread(512, 0)


def test_server_many_clients_and_big_pipelined_io(served):
    srv, img = served
    clients = [NbdClient(srv.uri_for("disk")) for _ in range(6)]
    data = os.urandom(2 * MiB)
    for i, c in enumerate(clients):
        c.aio_pwrite(memoryview(data)[i * 65536:(i + 1) * 65536], i * 65536)
    for c in clients:
        c.wait_all()
        c.flush()
    bufs = [bytearray(MiB) for _ in clients]
    cmds = [c.aio_pread(b, 0) for c, b in zip(clients, bufs)]
    for c, cmd in zip(clients, cmds):
        c.wait(cmd)
    expect = data[:6 * 65536] + bytes(MiB - 6 * 65536)
    assert all(bytes(b) == expect for b in bufs)
    # one client, a 16 MiB write pipelined against reads: full duplex, no deadlock
    big = os.urandom(4 * MiB)
    c = clients[0]
    rd = [c.aio_pread(bytearray(MiB), i * MiB) for i in range(4)]
    wr = [c.aio_pwrite(big, 4 * MiB)]
    for cmd in rd + wr:
        c.wait(cmd)
    assert c.pread(4 * MiB, 4 * MiB) == big
    for c in clients:
        c.close()


def test_block_status_req_one_and_unaligned_tail(tmp_path):
    img = tmp_path / "t.img"
    with open(img, "wb") as f:
        f.truncate(MiB + 1000)   # size not a multiple of 512
        f.seek(MiB)
        f.write(b"z" * 1000)
    dev = FileDevice(img)
    with NbdServer(dev) as srv, NbdClient(srv.uri) as c:
        assert c.size == MiB + 1000
        ext = c.block_status(0, c.size)["base:allocation"]
        assert sum(n for n, _ in ext) >= c.size and ext[0][1] == 3
        one = c.block_status(0, 4096, req_one=True)["base:allocation"]
        assert one == [(4096, 3)]
        assert c.pread(1000, MiB) == b"z" * 1000
    dev.close()
