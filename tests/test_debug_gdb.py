"""The gdb stub against Debian's gdb in batch mode, and at the protocol level for what a batch gdb cannot do
(Ctrl-C while running, a lost connection, a long stop under --timeout).

The disk is the L3 rung (SYSLINUX's MBR, SYSLINUX, chain.c32, the FreeDOS kernel on C:) served by a real nbdkit:
its MBR relocates itself from 0x7C00 to 0x600 and patches its own code, which is what a person debugging one
steps through."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import pytest

from support.images import image
from support.servers import require_tool

L3_PROMPT = "NBDBOOT-L3 C:\\>"
PROMPT = "A:\\>"

GDB_SCRIPT = r"""
p/x $pc
x/3i $pc
break *0x7c1a
continue
stepi
p/x $pc
p/x $cs
x/2i $pc
x/16xb 0x7be
p/x *(unsigned int*)(0x7be+8)
set $es = 0x1234
p/x $es
set $es = 0
watch *(unsigned int*)0x68d
continue
p/x $pc
p/x *(unsigned int*)0x68d
monitor ivt 13
monitor regs
delete
continue
"""


def start_run(*argv: str) -> tuple[subprocess.Popen, int]:
    """`nbdboot run ... --gdb 0`; returns the process and the port its stub listens on."""
    proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "run", *argv, "--gdb", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if found:
            return proc, int(found.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no gdb stub: {proc.communicate()}")


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"nbdboot did not end:\n{out}\n{err}")
    return proc.returncode, out, err


def test_gdb_steps_through_the_mbr_and_continues_to_the_prompt(nbdkit, tmp_path):
    gdb = require_tool("gdb")
    server = nbdkit("-r", "file", str(image("l3-chain-freedos")))
    proc, port = start_run("--server", server.hostport, "--gdb-wait", "--expect", L3_PROMPT,
                           "--timeout", "60", "--headless")
    try:
        script = tmp_path / "session.gdb"
        script.write_text(GDB_SCRIPT)
        result = subprocess.run([gdb, "-batch", "-nx", "-ex", f"target remote 127.0.0.1:{port}", "-x", str(script)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=90)
    finally:
        code, out, err = finish(proc)
    log = result.stdout
    assert result.returncode == 0, log
    # Stopped before the MBR's first instruction; $pc is linear and the code decodes as 16-bit.
    assert "$1 = 0x7c00" in log
    assert "=> 0x7c00:\txor    %ax,%ax" in log
    # The far jump at 7C1A lands in the copy at 0000:061F.
    assert "Breakpoint 1, 0x00007c1a" in log
    assert "$2 = 0x61f" in log and "$3 = 0x0" in log
    assert "=> 0x61f:\tpush   %dx" in log
    # The relocated partition table: active, type 06 (FAT16), starting at LBA 2048.
    assert re.search(r"0x7be:\s+0x80\s+0x\w+\s+0x\w+\s+0x\w+\s+0x06", log)
    assert "$4 = 0x800" in log
    assert "$5 = 0x1234" in log                        # segment registers are writable
    # The MBR patches its own read routine when int 13h extensions exist: the watchpoint stops after the store.
    assert "Hardware watchpoint 2: *(unsigned int*)0x68d" in log
    assert "New value = 367739572" in log                # 0x15EB42B4
    assert "$6 = 0x642" in log and "$7 = 0x15eb42b4" in log
    assert "int 13h -> f000:" in log and "BIOS int 13h" in log
    assert "mode real" in log and "CR0=00000010" in log
    assert "exited normally" in log
    assert code == 0, err
    assert L3_PROMPT in out


class Rsp:
    """A minimal gdb remote protocol client."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""

    def send(self, body: str) -> None:
        raw = body.encode()
        self.sock.sendall(b"$" + raw + b"#" + f"{sum(raw) & 0xFF:02x}".encode())

    def reply(self) -> str:
        while True:
            self.buf = self.buf.lstrip(b"+")
            match = re.match(rb"\$([^#]*)#[0-9a-f]{2}", self.buf)
            if match:
                self.buf = self.buf[match.end():]
                self.sock.sendall(b"+")
                return match.group(1).decode()
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("stub closed the connection")
            self.buf += data

    def ask(self, body: str) -> str:
        self.send(body)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def test_ctrl_c_interrupts_and_a_lost_connection_leaves_the_guest_running(freedos_img, tmp_path):
    disk = tmp_path / "freedos.img"
    disk.write_bytes(freedos_img.read_bytes())
    # The run ends when text gdb writes into video memory shows. --timeout 8: gdb holds the guest stopped for
    # longer than that in all, which must not count.
    proc, port = start_run("--image", str(disk), "--drive", "0x00", "--gdb-wait", "--expect", "GDB-WAS-HERE",
                           "--timeout", "8", "--headless")
    rsp = Rsp(port)
    try:
        assert rsp.ask("qSupported:swbreak+").startswith("PacketSize=")
        xml = rsp.ask("qXfer:features:read:target.xml:0,fff")
        assert xml.startswith("l") and "<architecture>i8086</architecture>" in xml
        assert rsp.ask("?").startswith("T05")
        regs = bytes.fromhex(rsp.ask("g"))
        assert int.from_bytes(regs[32:36], "little") == 0x7C00              # eip: linear
        assert int.from_bytes(regs[8:12], "little") & 0xFF == 0x00          # edx: DL = boot drive
        assert rsp.ask("m7dfe,2") == "55aa"
        time.sleep(5)                                   # stopped: not counted against --timeout
        for _ in range(40):                             # until FreeDOS is at its prompt, waiting for a key
            rsp.send("c")
            time.sleep(0.25)
            rsp.sock.sendall(b"\x03")
            assert rsp.reply().startswith("T02")
            screen = bytes.fromhex(rsp.ask("qRcmd," + b"screen".hex())).decode()
            if PROMPT in screen:
                break
        assert PROMPT in screen
        pc = int.from_bytes(bytes.fromhex(rsp.ask("p8")), "little")
        assert pc >= 0x500                               # somewhere in DOS or the BIOS, not lost
        text = "".join(ch + "\x07" for ch in "GDB-WAS-HERE").encode().hex()
        assert rsp.ask(f"M{0xB8000 + 160 * 20:x},{len(text) // 2:x}:{text}") == "OK"
        time.sleep(4)                                    # 9 s stopped in all
    finally:
        rsp.close()                                      # gone without a detach: the guest runs on
        code, out, err = finish(proc)
    assert "gdb disconnected; the guest runs on" in err
    assert code == 0, err
    assert "GDB-WAS-HERE" in out and PROMPT in out


def test_breakpoint_step_and_detach(freedos_img, tmp_path):
    disk = tmp_path / "freedos.img"
    disk.write_bytes(freedos_img.read_bytes())
    proc, port = start_run("--image", str(disk), "--drive", "0x00", "--gdb-wait", "--expect", PROMPT,
                           "--timeout", "60", "--headless")
    rsp = Rsp(port)
    try:
        assert rsp.ask("?").startswith("T05")
        first = rsp.ask("m7c00,2")                      # FreeDOS's boot sector starts with a short jmp
        assert first[:2] == "eb"
        target = 0x7C02 + int(first[2:], 16)
        assert rsp.ask("Z0,%x,1" % target) == "OK"
        rsp.send("c")
        assert rsp.reply().startswith("T05swbreak")
        assert int.from_bytes(bytes.fromhex(rsp.ask("p8")), "little") == target
        assert rsp.ask("z0,%x,1" % target) == "OK"
        assert rsp.ask("s").startswith("T05")           # one instruction further
        after = int.from_bytes(bytes.fromhex(rsp.ask("p8")), "little")
        assert 0 < after - target <= 15
        assert rsp.ask("P8=007c0000") == "OK"           # $pc = 0x7C00 again? keep CS 0: IP 7C00
        assert int.from_bytes(bytes.fromhex(rsp.ask("p20")), "little") == 0x7C00  # ip
        assert rsp.ask("P8=%s" % after.to_bytes(4, "little").hex()) == "OK"
        assert rsp.ask("D") == "OK"
    finally:
        rsp.close()
        code, out, err = finish(proc)
    assert "gdb detached" in err
    assert code == 0, err
    assert PROMPT in out


def test_gdb_wait_needs_gdb(freedos_img):
    result = subprocess.run([sys.executable, "-m", "nbdboot", "run", "--image", str(freedos_img), "--drive", "0x00",
                             "--gdb-wait"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--gdb-wait goes with --gdb" in result.stderr


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:99999"])
def test_bad_gdb_address(freedos_img, address):
    result = subprocess.run([sys.executable, "-m", "nbdboot", "run", "--image", str(freedos_img), "--drive",
                             "0x00", "--gdb", address, "--timeout", "5"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "port" in result.stderr and "Traceback" not in result.stderr


# Switches between real mode and 32-bit protected mode forever: in protected mode it counts in a long loop, back in
# real mode it prints a dot with int 10h, until a debugger sets the byte `stop` (at 7C00h + 2, just after the first
# jump), when it prints DONE and halts.
MODE_SWITCHER = r"""
        jmp     short start
stop:   db      0
start:  cli
        xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        mov     sp, 7C00h
        lgdt    [gdtr]
again:  cli
        mov     eax, cr0
        or      al, 1
        mov     cr0, eax
        jmp     08h:pm32
        bits    32
pm32:   mov     ax, 10h
        mov     ds, ax
        mov     ss, ax
        mov     ecx, 3000000
.spin:  inc     dword [counter]
        loop    .spin
        jmp     18h:pm16
        bits    16
pm16:   mov     ax, 20h
        mov     ds, ax
        mov     ss, ax
        mov     eax, cr0
        and     al, 0FEh
        mov     cr0, eax
        jmp     0:real
real:   xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        sti
        mov     ax, 0E2Eh
        int     10h
        cmp     byte [stop], 0
        je      again
        mov     si, done
.print: lodsb
        test    al, al
        jz      .halt
        mov     ah, 0Eh
        int     10h
        jmp     .print
.halt:  hlt
        jmp     .halt
done:   db      "DONE", 0
counter: dd     0
gdt:    dq      0
        dq      00CF9A000000FFFFh
        dq      00CF92000000FFFFh
        dq      00009A000000FFFFh
        dq      000092000000FFFFh
gdtr:   dw      gdtr - gdt - 1
        dd      gdt
"""


def test_interrupts_in_protected_mode_and_steps_there(tmp_path):
    """Stops land in real and protected mode; in protected mode $pc is EIP (flat code segment), a step moves it
    and memory there reads; the guest goes on switching modes afterwards."""
    src = tmp_path / "switch.asm"
    src.write_text("        cpu 386\n        bits 16\n        org 7C00h\n" + MODE_SWITCHER
                   + "        times 510 - ($ - $$) db 0\n        dw 0AA55h\n")
    subprocess.run(["nasm", "-f", "bin", "-o", str(tmp_path / "switch.bin"), str(src)], check=True)
    disk = tmp_path / "disk.img"
    disk.write_bytes((tmp_path / "switch.bin").read_bytes() + bytes(1 << 20))
    proc, port = start_run("--image", str(disk), "--gdb-wait", "--expect", "DONE", "--timeout", "60", "--headless")
    rsp = Rsp(port)
    try:
        assert rsp.ask("?").startswith("T05")
        modes = set()
        for attempt in range(100):
            rsp.send("c")
            time.sleep(0.02 * (attempt % 10))
            rsp.sock.sendall(b"\x03")
            assert rsp.reply().startswith("T02")
            regs = bytes.fromhex(rsp.ask("qRcmd," + b"regs".hex())).decode()
            mode = regs.split()[1]
            modes.add(mode)
            if mode == "protected" and "protected-step" not in modes:
                pc = int.from_bytes(bytes.fromhex(rsp.ask("p8")), "little")
                assert f"CS:IP 0008:{pc:04x} (linear {pc:#x})" in regs
                code = rsp.ask(f"m{pc:x},4")
                assert len(code) == 8
                assert rsp.ask("s").startswith("T05")
                after = int.from_bytes(bytes.fromhex(rsp.ask("p8")), "little")
                assert after != pc and after - pc <= 7, (hex(pc), code, hex(after))
                modes.add("protected-step")
            if {"real", "protected-step"} <= modes:
                break
        assert {"real", "protected", "protected-step"} <= modes, modes
        assert rsp.ask("M7c02,1:01") == "OK"              # the guest's stop flag: it prints DONE and halts
        assert rsp.ask("D") == "OK"
    finally:
        rsp.close()
        code, out, err = finish(proc)
    assert code == 0, err
    assert ".DONE" in out


def test_a_crash_stops_in_gdb_before_the_run_ends(tmp_path):
    """ud2 with no int 6 handler: gdb gets the stop (SIGSEGV) at the instruction, can read there, and on continue
    the run ends as a crash (exit 4) and gdb hears the guest was terminated."""
    from nbdboot.debug.sectors import assemble
    sector = assemble(tmp_path, "        mov ax, 1234h\n        ud2\n")
    disk = tmp_path / "disk.img"
    disk.write_bytes(sector + bytes(1 << 20))
    at = 0x7C00 + sector.index(bytes.fromhex("0f0b"))
    proc, port = start_run("--image", str(disk), "--gdb-wait", "--timeout", "30", "--headless")
    rsp = Rsp(port)
    try:
        assert rsp.ask("?").startswith("T05")
        rsp.send("c")
        assert rsp.reply().startswith("T0b")
        assert int.from_bytes(bytes.fromhex(rsp.ask("p8")), "little") == at
        assert int.from_bytes(bytes.fromhex(rsp.ask("p0")), "little") & 0xFFFF == 0x1234
        assert rsp.ask(f"m{at:x},2") == "0f0b"
        rsp.send("c")
        assert rsp.reply() == "X0b"
    finally:
        rsp.close()
        code, out, err = finish(proc)
    assert code == 4, err
    assert "the guest crashed" in err and "invalid opcode" in err
