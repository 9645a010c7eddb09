"""Our client against real servers (nbdkit, qemu-nbd, nbd-server, our own), command by command."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbdboot.disk.base import EXTENT_ZERO
from nbdboot.disk.file import FileDevice
from nbdboot.disk.nbd import NbdDevice
from nbdboot.nbd import protocol as P
from nbdboot.errors import DiskReadOnlyError
from nbdboot.nbd.client import list_exports, list_meta_contexts, NbdClient
from nbdboot.nbd.errors import NbdConnectionError, NbdNegotiationError, NbdTLSError
from nbdboot.nbd.server import NbdServer
from support.servers import Server, free_port, require_tool, wait_for_path, wait_for_port

MiB = 1 << 20


@pytest.fixture
def qemu_nbd(tmp_path):
    require_tool("qemu-nbd")
    procs = []

    def start(image, *extra, name="disk"):
        sock = str(tmp_path / f"qemu{len(procs)}.sock")
        proc = subprocess.Popen(["qemu-nbd", "-t", "-f", "raw", "-k", sock, "-x", name, *extra, str(image)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        wait_for_path(sock, proc)
        return Server(proc, f"nbd+unix:///{name}?socket={sock}", socket_path=sock)

    yield start
    for p in procs:
        p.terminate()
        p.wait(5)


@pytest.fixture
def nbd_server(tmp_path):
    """nbd-server with a generated config (loopback TCP); it daemonizes, so we track its pid file."""
    require_tool("nbd-server")
    pids = []

    def start(exports: dict[str, str]):
        port = free_port()
        conf = tmp_path / f"nbd-server{len(pids)}.conf"
        pidfile = tmp_path / f"nbd-server{len(pids)}.pid"
        text = f"[generic]\n    listenaddr = 127.0.0.1\n    port = {port}\n    allowlist = true\n"
        for name, path in exports.items():
            text += f"[{name}]\n    exportname = {path}\n    trim = true\n    flush = true\n    fua = true\n"
        conf.write_text(text)
        subprocess.run(["nbd-server", "-C", str(conf), "-p", str(pidfile)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_path(str(pidfile))
        wait_for_port(port)
        pids.append(int(pidfile.read_text().strip() or 0))
        return f"nbd://127.0.0.1:{port}"

    yield start
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def exercise(uri: str, *, size: int, expect_holes: bool = False):
    """Every command the server advertises, checked by reading back."""
    with NbdClient(uri, reconnect=False) as c:
        assert c.size == size
        data = os.urandom(3 * 65536)
        c.pwrite(data, 65536)
        assert c.pread(len(data), 65536) == data
        # pipelined: 32 reads in flight, answered in any order, each into its own slice
        buf = bytearray(32 * 4096)
        view = memoryview(buf)
        cmds = [c.aio_pread(view[i * 4096:(i + 1) * 4096], 65536 + i * 4096) for i in range(32)]
        for cmd in cmds:
            c.wait(cmd)
        assert bytes(buf) == data[:len(buf)]
        if c.can_fua:
            c.pwrite(b"F" * 4096, 0, fua=True)
            assert c.pread(4096, 0) == b"F" * 4096
        if c.can_flush:
            c.flush()
        if c.can_zero:
            c.zero(65536, 65536)
            assert c.pread(65536, 65536) == bytes(65536)
            c.zero(131072, 4096, no_hole=True)
            assert c.pread(4096, 131072) == bytes(4096)
        if c.can_trim:
            c.trim(size // 2, MiB)
        if c.can_cache:
            c.cache(0, 65536)
        if c.can_block_status:
            ext = c.block_status(0, size)["base:allocation"]
            assert ext and all(n > 0 for n, _ in ext)
            one = c.block_status(0, size, req_one=True)["base:allocation"]
            assert len(one) == 1 and one[0][0] <= size
            if expect_holes:
                assert any(f & P.STATE_ZERO for _, f in ext)
        return c.flags


def test_nbdkit_memory_tcp(nbdkit):
    srv = nbdkit("memory", "16M")
    flags = exercise(srv.uri, size=16 * MiB, expect_holes=True)
    assert flags & P.TFLAG_SEND_TRIM and flags & P.TFLAG_SEND_WRITE_ZEROES


def test_nbdkit_memory_unix(nbdkit):
    srv = nbdkit("memory", "16M", unix=True)
    exercise(srv.uri, size=16 * MiB)


def test_nbdkit_file(nbdkit, tmp_path):
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(8 * MiB)
    srv = nbdkit("file", str(img))
    exercise(srv.uri, size=8 * MiB, expect_holes=True)
    assert img.read_bytes()[0:4096] == b"F" * 4096  # FUA write reached the file


def test_nbdkit_cow_over_pattern(nbdkit):
    srv = nbdkit("--filter=cow", "pattern", "8M")
    exercise(srv.uri, size=8 * MiB)
    with NbdClient(srv.uri) as c:
        # untouched parts still show the pattern: each 8 bytes hold their own offset
        far = c.pread(16, 6 * MiB)
        assert far == (6 * MiB).to_bytes(8, "big") + (6 * MiB + 8).to_bytes(8, "big")


def test_nbdkit_pattern_and_sparse_random_read_identical_to_nbdcopy(nbdkit, tmp_path):
    require_tool("nbdcopy")
    for args in (("pattern", "5M"), ("sparse-random", "16M", "seed=7", "percent=20")):
        srv = nbdkit(*args)
        theirs = tmp_path / "theirs.img"
        subprocess.run(["nbdcopy", srv.uri, str(theirs)], check=True)
        with NbdDevice(srv.uri) as dev:
            ours = dev.pread(dev.size, 0)
            if args[0] == "sparse-random":
                assert any(e.flags & EXTENT_ZERO for e in dev.extents(0, dev.size))
        assert ours == theirs.read_bytes()


def test_nbdkit_structured_replies_off_and_oldstyle(nbdkit):
    srv = nbdkit("--no-sr", "memory", "4M")
    with NbdClient(srv.uri) as c:
        assert not c.structured and not c.contexts
        c.pwrite(b"abc" * 1000, 100)
        assert c.pread(3000, 100) == b"abc" * 1000
    old = nbdkit("-o", "pattern", "1M")
    with NbdClient(old.uri) as c:
        assert c.protocol == "oldstyle" and c.size == MiB
        assert c.pread(8, 4096) == (4096).to_bytes(8, "big")


class OldstyleServer:
    """An oldstyle NBD server on loopback: protocol.encode_oldstyle_greeting's bytes (cut after `greeting_bytes` if
    given), then simple replies to READ and FLUSH until DISC. `commands` is what the client sent."""

    def __init__(self, data: bytes, flags: int, greeting_bytes: int | None = None):
        self.data, self.commands = data, []
        self.greeting = P.encode_oldstyle_greeting(len(data), flags)[:greeting_bytes]
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.uri = f"nbd://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as rfile:
            conn.sendall(self.greeting)
            while len(self.greeting) == P.GREETING_SIZE + P.OLDSTYLE_REST_SIZE:
                head = rfile.read(P.REQUEST.size)
                if len(head) < P.REQUEST.size:
                    return
                _, cmd, cookie, offset, length = P.decode_request(head)
                self.commands.append(cmd)
                if cmd == P.CMD_DISC:
                    return
                reply = P.encode_simple_reply(cookie, 0 if cmd in (P.CMD_READ, P.CMD_FLUSH) else errno.EINVAL)
                conn.sendall(reply + (self.data[offset:offset + length] if cmd == P.CMD_READ else b""))

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def test_oldstyle_server_on_loopback_from_our_encoder():
    data = os.urandom(2 * MiB)
    server = OldstyleServer(data, P.TFLAG_HAS_FLAGS | P.TFLAG_READ_ONLY | P.TFLAG_SEND_FLUSH)
    try:
        with NbdClient(server.uri, reconnect=False) as c:
            assert (c.protocol, c.size, c.read_only, c.structured) == ("oldstyle", 2 * MiB, True, False)
            assert c.pread(65536, MiB - 512) == data[MiB - 512:MiB + 65024]
            with pytest.raises(DiskReadOnlyError):
                c.pwrite(b"x" * 512, 0)
            c.flush()
    finally:
        server.close()
    # the write was refused before it reached the wire; the flush went because the flags advertised it
    assert server.commands == [P.CMD_READ, P.CMD_FLUSH, P.CMD_DISC]


@pytest.mark.parametrize("cut", [8, P.GREETING_SIZE + 8, P.GREETING_SIZE + P.OLDSTYLE_REST_SIZE - 1])
def test_oldstyle_greeting_cut_short_is_a_connection_error(cut):
    server = OldstyleServer(bytes(MiB), P.TFLAG_HAS_FLAGS, greeting_bytes=cut)
    try:
        with pytest.raises(NbdConnectionError):
            NbdClient(server.uri, reconnect=False, connect_timeout=5)
    finally:
        server.close()


def test_oldstyle_server_when_tls_is_required():
    server = OldstyleServer(bytes(MiB), P.TFLAG_HAS_FLAGS)
    try:
        with pytest.raises(NbdTLSError, match="oldstyle"):
            NbdClient(server.uri.replace("nbd://", "nbds://"), reconnect=False)
    finally:
        server.close()


def test_nbdkit_non_fixed_newstyle_falls_back_to_export_name(nbdkit):
    srv = nbdkit("--mask-handshake=0", "pattern", "1M")
    with NbdClient(srv.uri) as c:
        assert c.protocol == "newstyle"
        assert c.pread(8, 8) == (8).to_bytes(8, "big")


def test_nbdkit_block_size_constraints_obeyed(nbdkit):
    srv = nbdkit("--filter=blocksize-policy", "memory", "4M", "blocksize-minimum=4096",
                 "blocksize-preferred=65536", "blocksize-maximum=1M", "blocksize-error-policy=error")
    dev = NbdDevice(srv.uri)
    try:
        assert (dev.min_block, dev.preferred_block, dev.max_block) == (4096, 65536, MiB)
        data = os.urandom(3 * MiB + 1001)
        dev.pwrite(data, 777)              # unaligned and bigger than max: RMW + split
        assert dev.pread(len(data), 777) == data
        dev.zero(100, 10000)
        assert dev.pread(10000, 100) == bytes(10000)
        assert dev.pread(10, 10100) == data[10100 - 777:10110 - 777]
    finally:
        dev.close()


def test_nbdkit_list_info_and_meta_contexts(nbdkit):
    require_tool("nbdinfo")
    srv = nbdkit("-e", "the-export", "memory", "1M")
    listed = json.loads(subprocess.run(["nbdinfo", "--list", "--json", srv.uri], check=True,
                                       capture_output=True, text=True).stdout)["exports"]
    assert [n for n, _ in list_exports(srv.uri)] == [e["export-name"] for e in listed]
    assert "base:allocation" in list_meta_contexts(srv.uri + "/the-export")
    theirs = json.loads(subprocess.run(["nbdinfo", "--json", srv.uri + "/the-export"], check=True,
                                       capture_output=True, text=True).stdout)["exports"][0]
    with NbdClient(srv.uri + "/the-export") as c:
        assert c.size == theirs["export-size"]
        assert c.read_only == theirs["is_read_only"]
        assert c.can_trim == theirs["can_trim"] and c.can_zero == theirs["can_zero"]
        assert c.can_multi_conn == theirs["can_multi_conn"]


def test_unknown_export_is_a_negotiation_error(tmp_path):
    dev = FileDevice(tmp_path / "a.img", create_size=MiB)
    with NbdServer({"a": dev}) as ours:
        with pytest.raises(NbdNegotiationError, match="unknown export") as e:
            NbdClient(ours.uri_for("nope"))
        assert e.value.exit_code == 3
    dev.close()


def test_qemu_nbd(qemu_nbd, tmp_path):
    img = tmp_path / "q.img"
    with open(img, "wb") as f:
        f.truncate(8 * MiB)
    srv = qemu_nbd(img, "-D", "a qemu disk")
    flags = exercise(srv.uri, size=8 * MiB, expect_holes=True)
    assert flags & P.TFLAG_SEND_FLUSH
    assert [n for n, _ in list_exports(srv.uri)] == ["disk"]
    with NbdClient(srv.uri) as c:
        assert c.description == "a qemu disk"


def test_qemu_nbd_sends_holes(qemu_nbd, tmp_path):
    """qcow2 with a zero cluster: qemu-nbd answers READ with OFFSET_HOLE chunks."""
    require_tool("qemu-img")
    require_tool("qemu-io")
    img = tmp_path / "h.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", str(img), "1M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x55 0 64k", "-c", "write -z 4k 4k", str(img)],
                   check=True, stdout=subprocess.DEVNULL)
    sock = str(tmp_path / "h.sock")
    proc = subprocess.Popen(["qemu-nbd", "-t", "-f", "qcow2", "-k", sock, str(img)], stderr=subprocess.DEVNULL)
    try:
        wait_for_path(sock, proc)
        with NbdClient(f"nbd+unix:///?socket={sock}") as c:
            buf = bytearray(b"\xee" * 65536)
            c.pread_into(buf, 0)
            assert buf[:4096] == b"\x55" * 4096 and buf[4096:8192] == bytes(4096)
            assert buf[8192:] == b"\x55" * (65536 - 8192)
    finally:
        proc.terminate()
        proc.wait(5)


def test_nbd_server(nbd_server, tmp_path):
    img = tmp_path / "n.img"
    other = tmp_path / "m.img"
    for p in (img, other):
        with open(p, "wb") as f:
            f.truncate(8 * MiB)
    uri = nbd_server({"disk": str(img), "second": str(other)})
    flags = exercise(uri + "/disk", size=8 * MiB)
    assert sorted(n for n, _ in list_exports(uri)) == ["disk", "second"]
    assert not flags & P.TFLAG_SEND_DF  # no structured replies from nbd-server 3.24
    with NbdClient(uri + "/second") as c:
        assert not c.structured


def test_our_server_with_our_client(tmp_path):
    img = tmp_path / "ours.img"
    dev = FileDevice(img, create_size=8 * MiB)
    with NbdServer({"x": dev}) as srv:
        exercise(srv.uri_for("x"), size=8 * MiB, expect_holes=True)
    dev.close()


def test_our_server_with_nbdinfo_and_nbdcopy(tmp_path):
    require_tool("nbdinfo")
    require_tool("nbdcopy")
    img = tmp_path / "src.img"
    payload = os.urandom(MiB)
    with open(img, "wb") as f:
        f.truncate(16 * MiB)
        f.seek(5 * MiB)
        f.write(payload)
    src = FileDevice(img, read_only=True)
    dst_img = tmp_path / "dst.img"
    dst = FileDevice(dst_img, create_size=16 * MiB)
    with NbdServer({"src": src, "dst": dst}) as srv:
        info = json.loads(subprocess.run(["nbdinfo", "--json", srv.uri_for("src")], check=True,
                                         capture_output=True, text=True).stdout)["exports"][0]
        assert info["export-size"] == 16 * MiB and info["is_read_only"]
        assert "base:allocation" in info["contexts"]
        listing = subprocess.run(["nbdinfo", "--list", "--json", srv.uri], check=True,
                                 capture_output=True, text=True).stdout
        assert {e["export-name"] for e in json.loads(listing)["exports"]} == {"src", "dst"}
        mapped = subprocess.run(["nbdinfo", "--map", srv.uri_for("src")], check=True,
                                capture_output=True, text=True).stdout
        assert "data" in mapped and "hole" in mapped
        subprocess.run(["nbdcopy", srv.uri_for("src"), srv.uri_for("dst")], check=True)
    src.close()
    dst.close()
    assert dst_img.read_bytes() == img.read_bytes()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    require_tool("certtool")
    d = tmp_path_factory.mktemp("pki")

    def run(*args, stdin=None):
        subprocess.run(["certtool", *args], check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    (d / "ca.info").write_text("cn = nbdboot test CA\nca\ncert_signing_key\nexpiration_days = 2\n")
    (d / "server.info").write_text("organization = nbdboot\ncn = localhost\ndns_name = localhost\n"
                                   "ip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\n"
                                   "expiration_days = 2\n")
    run("--generate-privkey", "--key-type=ecdsa", "--outfile", "ca-key.pem")
    run("--generate-self-signed", "--load-privkey", "ca-key.pem", "--template", "ca.info", "--outfile", "ca-cert.pem")
    run("--generate-privkey", "--key-type=ecdsa", "--outfile", "server-key.pem")
    run("--generate-certificate", "--load-ca-certificate", "ca-cert.pem", "--load-ca-privkey", "ca-key.pem",
        "--load-privkey", "server-key.pem", "--template", "server.info", "--outfile", "server-cert.pem")
    (d / "client.info").write_text("cn = nbdboot client\ntls_www_client\nencryption_key\nsigning_key\n"
                                   "expiration_days = 2\n")
    run("--generate-privkey", "--key-type=ecdsa", "--outfile", "client-key.pem")
    run("--generate-certificate", "--load-ca-certificate", "ca-cert.pem", "--load-ca-privkey", "ca-key.pem",
        "--load-privkey", "client-key.pem", "--template", "client.info", "--outfile", "client-cert.pem")
    os.chmod(d / "server-key.pem", 0o600)
    return d


def test_tls_nbdkit_require(nbdkit, pki):
    srv = nbdkit("--tls=require", f"--tls-certificates={pki}", "memory", "4M")
    tls_uri = f"nbds://127.0.0.1:{srv.port}/?tls-certificates={pki}"
    exercise(tls_uri, size=4 * MiB)
    with NbdClient(tls_uri) as c:
        assert c.export.tls
    # plain nbd:// is refused with a clear message, not a hang
    with pytest.raises(NbdNegotiationError, match="TLS required"):
        NbdClient(srv.uri)
    # a client that does not trust the CA fails the handshake
    untrusted = pki / "empty"
    untrusted.mkdir(exist_ok=True)
    with pytest.raises(NbdTLSError):
        NbdClient(f"nbds://127.0.0.1:{srv.port}/?tls-certificates={untrusted}")


def test_tls_required_but_server_has_none(nbdkit):
    srv = nbdkit("memory", "1M")
    with pytest.raises(NbdTLSError, match="STARTTLS"):
        NbdClient(f"nbds://127.0.0.1:{srv.port}/")


def test_qemu_nbd_dirty_bitmap_context_beside_base_allocation(tmp_path):
    require_tool("qemu-img")
    require_tool("qemu-io")
    img = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "4M"], check=True)
    subprocess.run(["qemu-img", "bitmap", "--add", "--enable", str(img), "b0"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 64k 64k", str(img)], check=True,
                   stdout=subprocess.DEVNULL)
    sock = str(tmp_path / "d.sock")
    proc = subprocess.Popen(["qemu-nbd", "-t", "-r", "-f", "qcow2", "-B", "b0", "-k", sock, str(img)],
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_path(sock, proc)
        uri = f"nbd+unix:///?socket={sock}"
        assert "qemu:dirty-bitmap:b0" in list_meta_contexts(uri, ["qemu:"])
        with NbdClient(uri, meta_contexts=("base:allocation", "qemu:dirty-bitmap:b0")) as c:
            assert sorted(c.contexts.values()) == ["base:allocation", "qemu:dirty-bitmap:b0"]
            got = c.block_status(0, 4 * MiB)
            dirty, pos = [], 0
            for n, flags in got["qemu:dirty-bitmap:b0"]:
                if flags & 1:
                    dirty.append((pos, n))
                pos += n
            assert dirty == [(65536, 65536)]
            assert got["base:allocation"]
    finally:
        proc.terminate()
        proc.wait(5)


def test_ipv6_loopback(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    dev = FileDevice(tmp_path / "v6.img", create_size=MiB)
    try:
        srv = NbdServer(dev, host="::1")
        try:
            srv.start()
        except OSError:
            pytest.skip("::1 is not configured")
        with srv, NbdClient(f"nbd://[::1]:{srv.address[1]}/") as c:
            c.pwrite(b"six" * 100, 0)
            assert c.pread(300, 0) == b"six" * 100
        assert srv.uri.startswith("nbd://[::1]:")
    finally:
        dev.close()


block_ops = st.lists(st.tuples(st.sampled_from(["write", "read", "zero"]),
                               st.integers(0, 2 * MiB - 1), st.integers(1, 300_000)), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=block_ops, minimum=st.sampled_from([512, 4096]))
def test_nbd_device_matches_a_model_under_strict_block_sizes(nbdkit_strict, ops, minimum):
    """Arbitrary offsets and lengths through NbdDevice reach a server that errors on any
    misaligned or oversized request; the result always matches a bytearray model."""
    uri = nbdkit_strict(minimum)
    model = bytearray(2 * MiB)
    with NbdDevice(uri, request_size=128 * 1024) as dev:
        dev.zero(0, dev.size)
        assert dev.min_block == minimum and dev.max_block == 256 * 1024
        for op, off, n in ops:
            n = min(n, dev.size - off)
            if op == "write":
                data = os.urandom(n)
                dev.pwrite(data, off)
                model[off:off + n] = data
            elif op == "zero":
                dev.zero(off, n)
                model[off:off + n] = bytes(n)
            else:
                assert dev.pread(n, off) == bytes(model[off:off + n])
        assert dev.pread(dev.size, 0) == bytes(model)


@pytest.fixture
def nbdkit_strict(nbdkit):
    servers = {}

    def get(minimum):
        if minimum not in servers:
            servers[minimum] = nbdkit("--filter=blocksize-policy", "memory", "2M",
                                      f"blocksize-minimum={minimum}", "blocksize-preferred=65536",
                                      "blocksize-maximum=262144", "blocksize-error-policy=error").uri
        return servers[minimum]
    return get


def test_tls_qemu_nbd(pki, tmp_path):
    require_tool("qemu-nbd")
    img = tmp_path / "tls.img"
    with open(img, "wb") as f:
        f.truncate(8 * MiB)
    port = free_port()
    proc = subprocess.Popen(["qemu-nbd", "-t", "-f", "raw", "-b", "127.0.0.1", "-p", str(port), "-x", "disk",
                             "--object", f"tls-creds-x509,id=tls0,dir={pki},endpoint=server,verify-peer=off",
                             "--tls-creds", "tls0", str(img)], stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        exercise(f"nbds://127.0.0.1:{port}/disk?tls-certificates={pki}", size=8 * MiB)
        with pytest.raises(NbdNegotiationError, match="TLS required"):
            NbdClient(f"nbd://127.0.0.1:{port}/disk")
    finally:
        proc.terminate()
        proc.wait(5)


def test_tls_client_certificate_when_the_server_verifies_peers(nbdkit, pki, tmp_path):
    srv = nbdkit("--tls=require", f"--tls-certificates={pki}", "--tls-verify-peer", "memory", "1M")
    with NbdClient(f"nbds://127.0.0.1:{srv.port}/?tls-certificates={pki}") as c:
        c.pwrite(b"cert" * 128, 0)
        assert c.pread(512, 0) == b"cert" * 128
    # the CA alone (no client certificate) is not enough for this server
    ca_only = tmp_path / "ca-only"
    ca_only.mkdir()
    (ca_only / "ca-cert.pem").write_bytes((pki / "ca-cert.pem").read_bytes())
    with pytest.raises((NbdTLSError, NbdConnectionError)):
        NbdClient(f"nbds://127.0.0.1:{srv.port}/?tls-certificates={ca_only}", reconnect=False)
