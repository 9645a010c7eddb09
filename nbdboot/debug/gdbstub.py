"""A gdb remote stub that works in real mode with a stock gdb and no scripts.

    nbdboot run --image disk.img --gdb 1234 --gdb-wait
    gdb -ex 'target remote :1234' -ex 'break *0x7c00' -ex continue

What makes real mode work without a hand-made target.xml or .gdbinit:
- the target description (qXfer:features:read) is i386's core registers, with
  architecture i8086 while the CPU is in real or virtual-8086 mode when gdb
  connects (16-bit disassembly) and i386 in protected mode; the register layout
  is the same in both, so `set architecture i8086` or `i386` never changes the
  size of a 'g' reply (QEMU's "Remote 'g' packet reply is too long");
- `eip`, which is gdb's $pc, is the linear address CS*16+IP in real and
  virtual-8086 mode (EIP in protected mode): `x/5i $pc`, `break *0x7c00` and
  `stepi` mean what they say; writing it picks CS:IP (CS kept when it can reach
  the address). The real IP is the extra register `ip`, CR0 is `cr0`;
- breakpoints and watchpoints are linear addresses, as gdb's memory accesses.

Everything else gdb lacks is a `monitor` command (`monitor help`). The stub runs
on the emulator's thread: while the guest runs it polls its sockets between
slices (a Ctrl-C from gdb, a new connection); while gdb holds the guest stopped
it blocks reading packets. A detach or a lost connection removes gdb's
breakpoints and lets the guest run on; --timeout does not count the time gdb
held the guest stopped.
"""

from __future__ import annotations

import select
import signal
import socket
import struct
import sys
import threading
import time

from nbdboot.debug.control import ACCESS, READ, WRITE, StopEvent
from nbdboot.errors import EXIT_INTERRUPTED, NbdbootError

GENERAL = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
SEGMENTS = ("cs", "ss", "ds", "es", "fs", "gs")
REG_EIP, REG_EFLAGS, REG_CS = 8, 9, 10
FIRST_FPU, FIRST_FPU_CONTROL, REG_IP, REG_CR0 = 16, 24, 32, 33
# (number, size in bytes) for every register of the description, in order.
LAYOUT = [(n, 4) for n in range(16)] + [(n, 10) for n in range(16, 24)] + [(n, 4) for n in range(24, 32)] \
    + [(REG_IP, 2), (REG_CR0, 4)]
PACKET_SIZE = 0x4000
SIGINT, SIGTRAP, SIGSEGV = 2, 5, 11


class GdbKilled(NbdbootError):
    exit_code = EXIT_INTERRUPTED


def target_xml(arch: str) -> str:
    flags = "".join(f'<field name="{name}" start="{bit}" end="{bit}"/>' for name, bit in (
        ("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9), ("DF", 10),
        ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18), ("VIF", 19), ("VIP", 20), ("ID", 21)))
    regs = "".join(f'<reg name="{name}" bitsize="32" type="{kind}"/>' for name, kind in (
        ("eax", "int32"), ("ecx", "int32"), ("edx", "int32"), ("ebx", "int32"), ("esp", "data_ptr"),
        ("ebp", "data_ptr"), ("esi", "int32"), ("edi", "int32"), ("eip", "code_ptr"),
        ("eflags", "i386_eflags"), ("cs", "int32"), ("ss", "int32"), ("ds", "int32"), ("es", "int32"),
        ("fs", "int32"), ("gs", "int32")))
    fpu = "".join(f'<reg name="st{i}" bitsize="80" type="i387_ext"/>' for i in range(8))
    fpu += "".join(f'<reg name="{name}" bitsize="32" type="int" group="float"/>' for name in (
        "fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"))
    return ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
            f"<target version=\"1.0\"><architecture>{arch}</architecture><osabi>none</osabi>"
            f'<feature name="org.gnu.gdb.i386.core"><flags id="i386_eflags" size="4">{flags}</flags>'
            f'{regs}{fpu}</feature>'
            '<feature name="org.nbdboot.x86.realmode">'
            '<reg name="ip" bitsize="16" type="uint16" group="general"/>'
            '<reg name="cr0" bitsize="32" type="uint32" group="system"/>'
            '</feature></target>')


def parse_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[V6]:PORT` for --gdb; loopback unless a host is given."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    host = host.strip("[]") or default_host
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"not a port: {text!r} (--gdb [HOST:]PORT)") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port out of range: {text!r}")
    return host, number


class GdbStub:
    def __init__(self, debugger, address: tuple[str, int], wait: bool, disklog=None, log=None):
        self.debugger = debugger
        self.machine = debugger.machine
        self.disklog = disklog
        self.log = log or sys.stderr
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((host, port))
        except OSError as e:
            self.listener.close()
            raise OSError(f"cannot listen on {host}:{port} for gdb: {e.strerror}") from None
        self.listener.listen(1)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self._say(f"gdb stub listening on {shown}:{self.port} (gdb: target remote {shown}:{self.port})")
        self.client: socket.socket | None = None
        self.inbuf = bytearray()
        self.awaiting_stop = False    # gdb sent c/s and waits for a stop reply
        self.last_stop = f"S{SIGTRAP:02x}"
        self.breakpoints: set[int] = set()
        self.watchpoints: set[tuple[str, int, int]] = set()
        self.pending_failure = None   # a crash met while gdb holds the guest; the run ends with it on continue
        self.xml = ""
        debugger.handlers.append(self.on_stop)
        debugger.pollers.append(self.poll)
        if wait:
            debugger.stop_at_boot = True

    def _say(self, text: str) -> None:
        print(f"nbdboot: {text}", file=self.log, flush=True)

    # -- while the guest runs -------------------------------------------------------------
    def poll(self) -> StopEvent | None:
        if self.client is None:
            # --gdb-wait: a gdb that connects early is taken at the boot stop, its first stop being 7C00h
            if not self.debugger.stop_at_boot and self._accept(0):
                return StopEvent("connect")
            return None
        if 0x03 in self.inbuf:  # came with the packet that resumed the guest
            del self.inbuf[:self.inbuf.index(0x03) + 1]
            return StopEvent("interrupt")
        try:
            data = self.client.recv(4096)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if not data:
            self._lost()
            return None
        if 0x03 in data:
            self.inbuf += data[data.index(0x03) + 1:]
            return StopEvent("interrupt")
        self.inbuf += data
        return None

    def _accept(self, timeout: float) -> bool:
        if timeout and not select.select([self.listener], [], [], timeout)[0]:
            return False
        try:
            client, peer = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return False
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client = client
        self.inbuf.clear()
        self.awaiting_stop = False
        self.xml = target_xml("i8086" if self.debugger.real_addressing() else "i386")
        self._say(f"gdb connected from {peer[0]}:{peer[1]}")
        return True

    def _lost(self) -> None:
        self._say("gdb disconnected; the guest runs on")
        self._drop_client()

    def _drop_client(self) -> None:
        for address in self.breakpoints:
            self.debugger.remove_breakpoint(address)
        for key in self.watchpoints:
            self.debugger.remove_watchpoint(*key)
        self.breakpoints.clear()
        self.watchpoints.clear()
        if self.client is not None:
            try:
                self.client.close()
            except OSError:
                pass
        self.client = None
        self.awaiting_stop = False

    def close(self, exit_status: int | None = 0) -> None:
        """The run is over: tell a waiting gdb the guest exited (None: it failed), then close everything."""
        if self.client is not None and self.awaiting_stop:
            try:  # exited with the run's status, or (a crash, an error) "terminated by SIGSEGV"
                self._send(f"W{exit_status & 0xFF:02x}" if exit_status is not None else f"X{SIGSEGV:02x}")
            except OSError:
                pass
        self._drop_client()
        self.listener.close()

    # -- stops --------------------------------------------------------------------------
    def on_stop(self, event: StopEvent) -> bool:
        if event.kind == "break" and event.address not in self.breakpoints:
            return False  # not ours (--break)
        if event.kind == "boot" and self.client is None:
            self._say("waiting for gdb before the boot sector's first instruction")
            if not self._wait_for_client():
                return False
        if self.client is None:
            return False
        if event.kind == "crash":
            self._say(f"the guest crashed: {event.failure}; gdb has it stopped there (continue ends the run)")
        self.last_stop = self._stop_reply(event)
        if self.awaiting_stop:
            self._send(self.last_stop)
            self.awaiting_stop = False
        started = time.monotonic()
        try:
            self._serve_stopped()
        finally:
            self.debugger.add_paused(time.monotonic() - started)
        if self.pending_failure is not None:
            failure, self.pending_failure = self.pending_failure, None
            raise failure
        return True

    def _stop_reply(self, event: StopEvent) -> str:
        if event.kind == "watch":
            return f"T05{event.watch}:{event.address:x};thread:1;"
        if event.kind == "break":
            return "T05swbreak:;thread:1;"
        if event.kind == "interrupt":
            return "T02thread:1;"
        if event.kind == "crash":
            return f"T{SIGSEGV:02x}thread:1;"
        return "T05thread:1;"

    def _wait_for_client(self) -> bool:
        """Block until gdb connects; --timeout (time not spent stopped by gdb) still ends the wait."""
        with _interruptible():
            while True:
                deadline = self.debugger.deadline
                left = None if deadline is None else deadline + self.debugger.paused - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if self._accept(0.25 if left is None else min(left, 0.25)):
                    return True

    def _serve_stopped(self) -> None:
        """Answer gdb until it resumes the guest, detaches or goes away."""
        with _interruptible():
            while self.client is not None:
                packet = self._read_packet()
                if packet is None:
                    self._lost()
                    return
                if self._handle(packet):
                    return

    # -- framing ------------------------------------------------------------------------
    def _read_packet(self) -> str | None:
        while True:
            while self.inbuf and self.inbuf[0] in b"+-\x03":
                if self.inbuf[0] == ord("-") and self._last_sent:
                    self.client.sendall(self._last_sent)
                del self.inbuf[0]
            start = self.inbuf.find(b"$")
            if start > 0:
                del self.inbuf[:start]
                continue
            if start == 0:
                end = self.inbuf.find(b"#")
                if end >= 0 and len(self.inbuf) >= end + 3:
                    body = bytes(self.inbuf[1:end])
                    checksum = bytes(self.inbuf[end + 1:end + 3])
                    del self.inbuf[:end + 3]
                    try:
                        ok = int(checksum, 16) == sum(body) & 0xFF
                    except ValueError:
                        ok = False
                    self.client.sendall(b"+" if ok else b"-")
                    if ok:
                        return body.decode("latin-1")
                    continue
            if not select.select([self.client], [], [], 0.25)[0]:
                continue
            try:
                data = self.client.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return None
            if not data:
                return None
            self.inbuf += data

    _last_sent = b""

    def _send(self, body: str) -> None:
        raw = body.encode("latin-1")
        packet = b"$" + raw + b"#" + f"{sum(raw) & 0xFF:02x}".encode()
        self._last_sent = packet
        self.client.setblocking(True)
        try:
            self.client.sendall(packet)
        finally:
            self.client.setblocking(False)

    # -- packets ------------------------------------------------------------------------
    def _handle(self, packet: str) -> bool:
        """Answer one packet; True when the guest is to run again."""
        try:
            reply = self._dispatch(packet)
        except _Resume:
            return True
        except (ValueError, IndexError, struct.error):
            reply = "E01"
        if reply is not None:
            self._send(reply)
        return False

    def _dispatch(self, packet: str) -> str | None:
        head = packet[:1]
        if head == "?":
            return self.last_stop
        if head == "g":
            return self._read_all_registers()
        if head == "G":
            self._write_all_registers(bytes.fromhex(packet[1:]))
            return "OK"
        if head == "p":
            return self._read_register(int(packet[1:], 16))
        if head == "P":
            number, value = packet[1:].split("=")
            return "OK" if self._write_register(int(number, 16), bytes.fromhex(value)) else "E01"
        if head == "m":
            address, length = (int(x, 16) for x in packet[1:].split(","))
            data = self._read_memory(address, min(length, PACKET_SIZE // 2))
            return data.hex() if data else "E14"
        if head == "M":
            where, data = packet[1:].split(":")
            address, _ = (int(x, 16) for x in where.split(","))
            return self._write_memory(address, bytes.fromhex(data))
        if head == "X":
            where, _, data = packet[1:].partition(":")
            address, length = (int(x, 16) for x in where.split(","))
            if length == 0:
                return "OK"
            return self._write_memory(address, _unescape(data.encode("latin-1")))
        if head in "cC":
            self._resume_at(packet[1:] if head == "c" else packet[1:].partition(";")[2])
            self.awaiting_stop = True
            raise _Resume
        if head in "sS":
            self._resume_at(packet[1:] if head == "s" else packet[1:].partition(";")[2])
            return self._step()
        if head in "zZ":
            return self._breakpoint(packet)
        if head == "D":
            self._say("gdb detached; the guest runs on")
            self._send("OK")
            self._drop_client()
            raise _Resume
        if head == "k" or packet.startswith("vKill"):
            self._send("OK")
            self._drop_client()
            raise GdbKilled("gdb killed the guest")
        if head == "H" or head == "T":
            return "OK"
        if packet.startswith("qSupported"):
            return f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;swbreak+;hwbreak+"
        if packet.startswith("qXfer:features:read:"):
            annex, _, span = packet[len("qXfer:features:read:"):].partition(":")
            if annex != "target.xml":
                return "E00"
            offset, length = (int(x, 16) for x in span.split(","))
            chunk = self.xml[offset:offset + length]
            return ("m" if offset + length < len(self.xml) else "l") + _escape(chunk)
        if packet == "qAttached" or packet.startswith("qAttached:"):
            return "1"  # gdb then detaches on quit rather than killing the guest
        if packet == "qC":
            return "QC1"
        if packet == "qfThreadInfo":
            return "m1"
        if packet == "qsThreadInfo":
            return "l"
        if packet.startswith("qSymbol"):
            return "OK"
        if packet.startswith("qRcmd,"):
            text = bytes.fromhex(packet[6:]).decode("latin-1")
            out = self.monitor(text)
            return out.encode("latin-1", errors="replace").hex() if out else "OK"
        return ""  # unsupported

    def _resume_at(self, address: str) -> None:
        if address:
            self._write_register(REG_EIP, int(address, 16).to_bytes(4, "little"))

    def _step(self) -> str:
        event = self.debugger.step()
        failure = self.debugger.take_failure()
        if failure is not None:
            self.pending_failure = failure
            self._say(f"the guest crashed: {failure} (continue in gdb to end the run)")
            self.last_stop = f"T{SIGSEGV:02x}thread:1;"
        elif event is not None:
            self.last_stop = self._stop_reply(event)
        else:
            self.last_stop = f"T{SIGTRAP:02x}thread:1;"
        return self.last_stop

    def _breakpoint(self, packet: str) -> str:
        insert = packet[0] == "Z"
        kind, address, length = packet[1:].split(",")[:3]
        address = int(address, 16)
        length = int(length.partition(";")[0], 16)
        if kind in "01":
            if insert:
                self.debugger.add_breakpoint(address)
                self.breakpoints.add(address)
            elif address in self.breakpoints:
                self.breakpoints.discard(address)
                self.debugger.remove_breakpoint(address)
            return "OK"
        watch = {"2": WRITE, "3": READ, "4": ACCESS}.get(kind)
        if watch is None:
            return ""
        key = (watch, address, length)
        if insert:
            self.debugger.add_watchpoint(*key)
            self.watchpoints.add(key)
        elif key in self.watchpoints:
            self.watchpoints.discard(key)
            self.debugger.remove_watchpoint(*key)
        return "OK"

    # -- registers ------------------------------------------------------------------------
    def _register_bytes(self, number: int) -> bytes:
        cpu = self.machine.cpu
        if number < 8:
            return struct.pack("<I", cpu.get(GENERAL[number]))
        if number == REG_EIP:
            return struct.pack("<I", self.debugger.pc_linear() if self.debugger.real_addressing() else cpu.get("eip"))
        if number == REG_EFLAGS:
            return struct.pack("<I", cpu.get("eflags"))
        if number < 16:
            return struct.pack("<I", cpu.get(SEGMENTS[number - REG_CS]))
        if number < FIRST_FPU_CONTROL:
            return bytes(10)
        if number < REG_IP:
            return struct.pack("<I", 0x037F if number == FIRST_FPU_CONTROL else 0)
        if number == REG_IP:
            return struct.pack("<H", (cpu.get("eip") & 0xFFFF))
        if number == REG_CR0:
            return struct.pack("<I", cpu.get("cr0"))
        raise ValueError(number)

    def _read_all_registers(self) -> str:
        return b"".join(self._register_bytes(n) for n, _ in LAYOUT).hex()

    def _read_register(self, number: int) -> str:
        if number > REG_CR0:
            return "E45"
        return self._register_bytes(number).hex()

    def _write_all_registers(self, data: bytes) -> None:
        pos = 0
        current = {n: self._register_bytes(n) for n, _ in LAYOUT}
        for number, size in LAYOUT:
            chunk = data[pos:pos + size]
            pos += size
            if len(chunk) == size and chunk != current[number]:
                self._write_register(number, chunk)

    def _write_register(self, number: int, value: bytes) -> bool:
        cpu = self.machine.cpu
        if number >= FIRST_FPU and number < REG_IP:
            return True  # the FPU is not modelled for gdb: writes are accepted and dropped
        if number > REG_CR0:
            return False
        word = int.from_bytes(value[:4].ljust(4, b"\0"), "little")
        try:
            if number < 8:
                cpu.set(GENERAL[number], word)
            elif number == REG_EIP:
                self._write_pc(word)
            elif number == REG_EFLAGS:
                cpu.set("eflags", word)
            elif number < 16:
                cpu.set(SEGMENTS[number - REG_CS], word & 0xFFFF)
            elif number == REG_IP:
                cpu.set("eip", word & 0xFFFF)
            elif number == REG_CR0:
                cpu.set("cr0", word)
        except Exception:  # noqa: BLE001 - Unicorn refuses e.g. a selector the GDT does not have
            return False
        return True

    def _write_pc(self, value: int) -> None:
        """$pc is linear in real mode: keep CS when it reaches the address, else CS = address >> 4."""
        cpu = self.machine.cpu
        if not self.debugger.real_addressing():
            cpu.set("eip", value)
            return
        base = cpu.get("cs") << 4
        if not base <= value < base + 0x10000:
            cpu.set("cs", (value >> 4) & 0xFFFF)
            base = (value >> 4 & 0xFFFF) << 4
        cpu.set("eip", value - base)

    # -- memory ---------------------------------------------------------------------------
    def _read_memory(self, address: int, length: int) -> bytes:
        cpu = self.machine.cpu
        limit = cpu.memory_size
        if address >= limit:
            return b""
        return cpu.read(address, min(length, limit - address))

    def _write_memory(self, address: int, data: bytes) -> str:
        cpu = self.machine.cpu
        if address + len(data) > cpu.memory_size:
            return "E14"
        cpu.write(address, data)
        return "OK"

    # -- monitor ---------------------------------------------------------------------------
    def monitor(self, text: str) -> str:
        from nbdboot.debug.inspect import monitor_command
        return monitor_command(self.machine, text, self.disklog)


class _Resume(Exception):
    """The packet resumes the guest (c, D)."""


def _escape(text: str) -> str:
    out = []
    for ch in text:
        if ch in "#$}*":
            out.append("}" + chr(ord(ch) ^ 0x20))
        else:
            out.append(ch)
    return "".join(out)


def _unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            out.append(next(it) ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


class _interruptible:
    """Ctrl-C raises at once while the stub blocks (the run loop otherwise only notes it between slices)."""

    def __enter__(self):
        self.saved = None
        if threading.current_thread() is threading.main_thread():
            self.saved = signal.getsignal(signal.SIGINT)
            if self.saved is not signal.SIG_IGN:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            else:
                self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            signal.signal(signal.SIGINT, self.saved)
        return False
