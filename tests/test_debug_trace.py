"""--trace exec/int, --log bios, --debugcon and --break on a NASM boot sector whose every step is known."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from nbdboot.debug.sectors import assemble

# Reads its second sector with int 13h 42h, says hello on port E9h and the screen, then does arithmetic the
# trace must show, and stops at a marked instruction (mov ax, 0BEEFh) before printing DONE.
BODY = r"""
        xor     ax, ax
        mov     ds, ax
        mov     si, dap
        mov     ah, 42h
        int     13h
        PRINT   "hello from E9"
        mov     ax, 0E48h
        int     10h
        mov     ax, 1234h
        mov     bx, ax
        add     bx, 0111h
        mov     cx, [8000h]
        mov     ax, 0BEEFh
        mov     ax, 0E44h
        int     10h
        mov     al, 'O'
        int     10h
        mov     al, 'N'
        int     10h
        mov     al, 'E'
        int     10h
        PRINT   "bye"
        sti
.idle:  hlt
        jmp     .idle
dap:    db 10h, 0
        dw 1, 8000h, 0
        dq 1
"""
SECOND_SECTOR = b"\x5a\xa5" + bytes(510)


def make_disk(tmp_path):
    sector = assemble(tmp_path, BODY)
    disk = tmp_path / "disk.img"
    disk.write_bytes(sector + SECOND_SECTOR + bytes(1 << 20))
    marker = sector.index(bytes.fromhex("b8efbe"))  # mov ax, 0BEEFh
    return disk, 0x7C00 + marker


def run(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "nbdboot", "run", *argv], capture_output=True, text=True,
                          timeout=timeout)


def test_exec_and_interrupt_trace_and_bios_log(tmp_path):
    disk, marker = make_disk(tmp_path)
    trace = tmp_path / "trace.txt"
    bios = tmp_path / "bios.txt"
    # No --expect: the run goes on for a second, halted with interrupts on, so timer IRQs are taken.
    result = run("--image", str(disk), "--timeout", "1", "--headless",
                 "--trace", "exec:7c00-7dff", "--trace", "int", "--trace-out", str(trace), "--log", f"bios,{bios}")
    assert result.returncode == 0, result.stderr
    lines = trace.read_text().splitlines()
    text = "\n".join(lines)
    # Each instruction of the range with the registers it changed; nothing outside the range.
    assert re.search(r"^0000:7c00 00007c00  eb\w\w\s+jmp 0x7c\w\w$", text, re.M)     # the prelude's jmp start
    assert re.search(r"^0000:7c\w\w 00007c\w\w  31c0\s+xor ax, ax\s+; .*eflags=", text, re.M)
    assert re.search(r"mov ax, 0x1234\s+; ax=1234$", text, re.M)
    assert re.search(r"mov bx, ax\s+; bx=1234$", text, re.M)
    assert re.search(r"add bx, 0x111\s+; bx=1345 eflags=", text, re.M)
    assert re.search(r"mov cx, word ptr \[0x8000\]\s+; cx=a55a$", text, re.M)   # the sector int 13h read
    assert re.search(rf"^0000:{marker:04x} {marker:08x}  b8efbe\s+mov ax, 0xbeef", text, re.M)
    exec_lines = [line for line in lines if not line.startswith("[")]
    assert all(0x7C00 <= int(line.split()[1], 16) <= 0x7DFF for line in exec_lines)
    # The interrupt trace: the boot sector's BIOS calls, with AX and the service that handled them.
    assert re.search(r"bios\s+13h at 0000:[0-9a-f]{4} AX=4200 -> BIOS int 13h \(Int13.int13\)", text)
    assert re.search(r"bios\s+10h at 0000:[0-9a-f]{4} AX=0e48 -> BIOS int 10h", text)
    assert re.search(r"irq0\s+08h at 0000:7c\w\w AX=0e45 -> f000:[0-9a-f]{4} \(BIOS", text)
    log = bios.read_text()
    assert re.search(r"int 13h AH=42h AX=4200 .* from 0000:[0-9a-f]{4} -> AX=0000 CF=0", log)
    assert re.search(r"int 10h AH=0eh AX=0e48", log)
    assert "int 19h" in log


def test_debugcon_to_file_and_stdout(tmp_path):
    disk, _ = make_disk(tmp_path)
    out = tmp_path / "e9.txt"
    result = run("--image", str(disk), "--expect", "HDONE", "--timeout", "30", "--headless", "--debugcon", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == b"hello from E9bye"
    result = run("--image", str(disk), "--expect", "HDONE", "--timeout", "30", "--headless", "--debugcon", "stdout")
    assert result.returncode == 0, result.stderr
    assert "hello from E9" in result.stdout


def test_break_stops_with_a_report_and_exit_7(tmp_path):
    disk, marker = make_disk(tmp_path)
    result = run("--image", str(disk), "--expect", "HDONE", "--timeout", "30", "--headless",
                 "--break", f"0000:{marker:04x},12345")
    assert result.returncode == 7, result.stderr
    err = result.stderr
    assert f"breakpoint at 0000:{marker:04x} (linear {marker:#x})" in err
    assert "mode real" in err and "EAX=00001234" in err and "ECX=0000a55a" in err
    assert re.search(rf"=> {marker:08x}\s+b8efbe\s+mov ax, 0xbeef", err)
    assert "stack:" in err
    assert re.search(r"80 42h read\s+LBA 1\+1\s+buf 0000:8000\s+ok", err)   # the last disk reads
    assert "HDONE" not in result.stdout                                      # stopped before printing it
    # Linear and SEG:OFF forms are the same address; an address never reached changes nothing.
    result = run("--image", str(disk), "--expect", "HDONE", "--timeout", "30", "--headless",
                 "--break", f"{(marker >> 4) - 0x10:04x}:{(marker & 0xF) + 0x100:04x}")
    assert result.returncode == 7, result.stderr
    result = run("--image", str(disk), "--expect", "HDONE", "--timeout", "30", "--headless", "--break", "12345")
    assert result.returncode == 0, result.stderr


# id: (options, with {tmp} for the test's directory; what the one-line error says)
BAD_DEBUG_OPTIONS = {
    "break-address": (["--break", "zz:1"], "not an address"),
    "trace-empty-range": (["--trace", "exec:7e00-7c00"], "empty range"),
    "trace-unknown": (["--trace", "bogus"], "--trace takes"),
    "log-unknown": (["--log", "disk"], "--log takes"),
    "trace-out-alone": (["--trace-out", "{tmp}/t"], "--trace-out goes with --trace"),
    "log-unwritable": (["--log", "int13,{tmp}/no/such/dir/log"], "cannot write"),
}


@pytest.mark.parametrize("case", list(BAD_DEBUG_OPTIONS))
def test_bad_debug_options(case, tmp_path):
    disk, _ = make_disk(tmp_path)
    options, message = BAD_DEBUG_OPTIONS[case]
    argv = [arg.format(tmp=tmp_path) for arg in options]
    result = run("--image", str(disk), "--timeout", "5", "--headless", *argv)
    assert result.returncode in (2, 6), result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
