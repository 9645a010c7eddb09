"""The engine sees guest code rewrite itself: Unicorn must drop translated code a guest store overwrites.

Boot loaders and decompressors write code and run it (iPXE patches its own far jumps, GRUB and Linux
decompress into memory that held code). Stock Unicorn checks every store to RAM for this; the faster build
(scripts/build-unicorn-fast, docs/perf.md) checks only stores to pages that hold translated code and must
put the check back on every mapping of a page, under any virtual address, once code is translated in it.
Run against the installed Unicorn, or another build with LIBUNICORN_PATH=DIR.
"""

from __future__ import annotations

import struct
import subprocess

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as X

from support.servers import require_tool

ROUNDS = 5000
CODE_PAGE = 0x5000  # the physical page the guest writes code into and runs

# Each round writes `mov eax, round; ret` through WRITE_AT, calls it at RUN_AT and adds EAX to EBX,
# with a data store beside the code: EBX = 1 + 2 + ... + ROUNDS only if every rewrite is run.
SOURCE = r"""
bits 32
org 0x1000
        xor ebx, ebx
        mov esi, 1
.round: mov byte [WRITE_AT], 0xB8
        mov [WRITE_AT + 1], esi
        mov byte [WRITE_AT + 5], 0xC3
        mov [WRITE_AT + 0x800], esi
        call RUN_AT
        add ebx, eax
        inc esi
        cmp esi, ROUNDS
        jbe .round
        hlt
"""


def assemble(tmp_path, write_at: int, run_at: int) -> bytes:
    nasm = require_tool("nasm")
    src, out = tmp_path / "smc.asm", tmp_path / "smc.bin"
    src.write_text(SOURCE)
    subprocess.run([nasm, "-f", "bin", f"-DWRITE_AT={write_at:#x}", f"-DRUN_AT={run_at:#x}",
                    f"-DROUNDS={ROUNDS}", "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def run(code: bytes, paging: bool) -> int:
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 8 << 20)
    uc.mem_write(0x1000, code)
    uc.reg_write(X.UC_X86_REG_ESP, 0x9000)
    if paging:
        # 0-4 MiB identity-mapped; 4 MiB and 8 MiB both map the code page.
        directory, low, alias_a, alias_b = 0x10000, 0x11000, 0x12000, 0x13000
        uc.mem_write(directory, struct.pack("<3I", low | 3, alias_a | 3, alias_b | 3))
        uc.mem_write(low, b"".join(struct.pack("<I", (i << 12) | 3) for i in range(1024)))
        uc.mem_write(alias_a, struct.pack("<I", CODE_PAGE | 3))
        uc.mem_write(alias_b, struct.pack("<I", CODE_PAGE | 3))
        uc.reg_write(X.UC_X86_REG_CR3, directory)
        uc.reg_write(X.UC_X86_REG_CR0, uc.reg_read(X.UC_X86_REG_CR0) | 0x80000001)
    uc.emu_start(0x1000, 0xFFFFFFFF)
    return uc.reg_read(X.UC_X86_REG_EBX)


@pytest.mark.parametrize("write_at, run_at, paging", [
    (CODE_PAGE, CODE_PAGE, False),     # one address, no paging
    (0x800000, 0x800000, True),        # one virtual address under paging
    (0x800000, 0x400000, True),        # written through one alias, run through another
], ids=["flat", "paged", "alias"])
def test_every_rewrite_of_code_is_run(tmp_path, write_at, run_at, paging):
    assert run(assemble(tmp_path, write_at, run_at), paging) == ROUNDS * (ROUNDS + 1) // 2
