"""Reset, re-boot and power-off as a PC does them, and --no-reboot (docs/machine.md, "Reset and power")."""

from __future__ import annotations

import pytest

from nbdboot.debug.sectors import run_sector
from nbdboot.machine.machine import GuestCrash, GuestPoweredOff, GuestReset

# First boot: mark 0:0500 (RAM survives a reset) and reset the way %1 says; second boot: report.
RESET_THEN_REPORT = r"""
        xor ax, ax
        mov ds, ax
        cmp word [500h], 1234h
        je second
        mov word [500h], 1234h
        HOW
        cli
spin:   jmp spin
second: mov word [500h], 0
        PRINT "REBOOTED DONE"
        sti
        hlt
"""

WAYS = {
    "8042 pulse": "mov al, 0FEh\n        out 64h, al",
    "8042 output port": "mov al, 0D1h\n        out 64h, al\n        mov al, 0FCh\n        out 60h, al",
    "port 92h": "in al, 92h\n        or al, 1\n        out 92h, al",
    "CF9h": "mov dx, 0CF9h\n        mov al, 06h\n        out dx, al",
    "reset vector": "jmp 0F000h:0FFF0h",
    "triple fault": "lidt [cs:null_idt]\n        jmp 08h:0\nnull_idt: dw 0\n        dd 0",
}


@pytest.mark.parametrize("way", WAYS)
def test_reset_reboots_the_machine(tmp_path, way):
    body = RESET_THEN_REPORT.replace("HOW", WAYS[way])
    if way == "triple fault":
        # Protected mode with an empty IDT: the first exception cannot be delivered.
        body = body.replace("jmp 08h:0", "mov eax, cr0\n        or al, 1\n        mov cr0, eax\n        int 3")
    machine, out = run_sector(tmp_path, body, timeout=10)
    assert out == "REBOOTED DONE"
    assert len(machine.resets) == 1


@pytest.mark.parametrize("way", ["8042 pulse", "port 92h", "reset vector"])
def test_no_reboot_ends_the_run(tmp_path, way):
    body = RESET_THEN_REPORT.replace("HOW", WAYS[way])
    with pytest.raises(GuestReset) as info:
        run_sector(tmp_path, body, until="never", no_reboot=True)
    assert info.value.exit_code == 8
    assert "--no-reboot" in str(info.value)


def test_triple_fault_with_no_reboot_is_a_crash_with_report(tmp_path):
    body = r"""
        cli
        lidt [cs:null_idt]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        int 3
null_idt: dw 0
        dd 0
"""
    with pytest.raises(GuestCrash) as info:
        run_sector(tmp_path, body, until="never", no_reboot=True)
    assert "triple fault" in str(info.value) and "--no-reboot" in str(info.value)
    assert "CS:IP" in info.value.report


def test_triple_fault_loop_is_a_crash(tmp_path):
    # The same triple fault after every reset: a reset loop, not a run to --timeout.
    body = r"""
        cli
        lidt [cs:null_idt]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        int 3
null_idt: dw 0
        dd 0
"""
    with pytest.raises(GuestCrash) as info:
        run_sector(tmp_path, body, until="never")
    assert "reset loop" in str(info.value)


def test_int19_from_the_guest_boots_again(tmp_path):
    body = r"""
        xor ax, ax
        mov ds, ax
        inc word [500h]
        cmp word [500h], 2
        je second
        int 19h
second: PRINT "BOOTED TWICE DONE"
        sti
        hlt
"""
    machine, out = run_sector(tmp_path, body)
    assert out == "BOOTED TWICE DONE"
    assert machine.resets == []   # a re-boot, not a reset (SeaBIOS's int 19h)
    with pytest.raises(GuestReset):
        run_sector(tmp_path, body, until="never", no_reboot=True)


def test_apm_power_off(tmp_path):
    body = r"""
        mov ax, 5300h
        xor bx, bx
        int 15h
        jc fail
        HEX16 ax
        PUTC ' '
        HEX16 bx
        PUTC ' '
        mov ax, 5301h
        xor bx, bx
        int 15h
        jc fail
        mov ax, 530Eh
        xor bx, bx
        mov cx, 0102h
        int 15h
        jc fail
        mov ax, 5307h
        mov bx, 1
        mov cx, 3
        int 15h
fail:   PRINT "FAIL"
        hlt
"""
    with pytest.raises(GuestPoweredOff) as info:
        run_sector(tmp_path, body, until="never")
    assert info.value.exit_code == 0
    assert "APM" in str(info.value)


def test_bochs_shutdown_port_powers_off(tmp_path):
    body = r"""
        mov si, word_shutdown
        mov dx, 8900h
.next:  lodsb
        test al, al
        jz .done
        out dx, al
        jmp .next
.done:  PRINT "FAIL"
        hlt
word_shutdown: db "Shutdown", 0
"""
    with pytest.raises(GuestPoweredOff):
        run_sector(tmp_path, body, until="never")


def test_one_reset_power_table_in_readme_docs_and_help():
    from support.images import ROOT
    from nbdboot.commands.run import RESET_POWER_TABLE, reset_power_help
    assert RESET_POWER_TABLE in (ROOT / "README.md").read_text()
    assert RESET_POWER_TABLE in (ROOT / "docs" / "machine.md").read_text()
    assert "int 19h from the guest:" in reset_power_help()


def _cli(tmp_path, body, *args):
    import subprocess
    import sys
    from nbdboot.debug.sectors import assemble
    disk = tmp_path / "disk.img"
    image = assemble(tmp_path, body)
    disk.write_bytes(image + bytes(1440 * 1024 - len(image)))
    return subprocess.run([sys.executable, "-m", "nbdboot", "run", "--image", str(disk), "--drive", "0x00",
                           "--headless", "--timeout", "20", *args], capture_output=True, text=True, timeout=60)


POWER_OFF = r"""
        mov ah, 0Eh
        mov al, 'Z'
        int 10h
        mov ax, 5307h
        mov bx, 1
        mov cx, 3
        int 15h
        cli
        hlt
"""


def test_cli_power_off_exit_codes(tmp_path):
    result = _cli(tmp_path, POWER_OFF)
    assert result.returncode == 0 and "guest powered off" in result.stderr, result.stderr
    result = _cli(tmp_path, POWER_OFF, "--expect", "Z")
    assert result.returncode == 0, result.stderr
    result = _cli(tmp_path, POWER_OFF, "--expect", "never shown")
    assert result.returncode == 1 and "before 'never shown' appeared" in result.stderr, result.stderr


def test_cli_no_reboot_exit_8(tmp_path):
    body = "        mov al, 0FEh\n        out 64h, al\n        cli\n        hlt\n"
    result = _cli(tmp_path, body, "--no-reboot")
    assert result.returncode == 8 and "--no-reboot" in result.stderr, result.stderr


def test_real_mode_idt_limit_0_then_an_interrupt_resets(tmp_path):
    # `lidt` of a zero limit in real mode, then the timer interrupt: the CPU cannot deliver it and
    # shuts down; a PC resets (here: the same fault after the reset ends the run as a reset loop).
    body = r"""
        lidt [cs:null_idt]
        sti
spin:   jmp spin
null_idt: dw 0
        dd 0
"""
    with pytest.raises(GuestCrash) as info:
        run_sector(tmp_path, body, until="never")
    assert "real-mode IDT limit" in str(info.value) and "reset loop" in str(info.value)
    with pytest.raises(GuestCrash) as info:
        run_sector(tmp_path, body, until="never", no_reboot=True)
    assert "triple fault" in str(info.value)


def test_real_mode_idt_limit_0_then_int_in_a_later_slice_resets(tmp_path):
    body = r"""
        xor ax, ax
        mov ds, ax
        lidt [cs:null_idt]
        mov ah, 0
        int 1Ah                     ; the slice that ran lidt may end here; this one is read in time or not
        mov cx, 3
.wait:  mov ah, 86h                 ; waits: a later slice for sure
        push cx
        xor cx, cx
        mov dx, 1000
        int 15h
        pop cx
        loop .wait
        int 3
        PRINT "FAIL"
        cli
        hlt
null_idt: dw 0
        dd 0
"""
    with pytest.raises(GuestCrash) as info:
        run_sector(tmp_path, body, until="never", no_reboot=True)
    assert "triple fault" in str(info.value)
