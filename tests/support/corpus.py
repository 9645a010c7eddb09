"""The compatibility corpus: boot programs we did not write, as a user boots them, one table for every runner.

Each case names an image built by `make corpus-images` (bootimages/images.mk, sources in bootimages/corpus/),
how the export is presented, the keys a user types (each after a text is on the screen) and the texts that must
all be on the screen at the end (the last is the one waited for). The texts are what QEMU+SeaBIOS shows for the
same image from the same nbdkit (tests/test_reference_corpus.py proves them); tests/test_corpus_nbdboot.py boots
the same cases under nbdboot, and bench/bench_corpus.py times both.

`xfail` is why nbdboot cannot pass the case yet (None: it passes); `nbdboot_timeout` keeps such a case cheap.
`slow` marks a case that takes long even for QEMU: marked corpus_long, run by `make test-corpus`, not `make test`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# Key names -> (nbdboot --keys item, QEMU send-key qcodes pressed together).
KEYS = {
    "enter": ("{enter}", ["ret"]),
    "ctrl-b": ("{ctrl-b}", ["ctrl", "b"]),
}


@dataclass(frozen=True)
class Case:
    image: str                      # bootimages/build/ file name
    expect: list[str]               # all on the final screen; the last is waited for
    media: str = "hdd"              # hdd, cd or floppy
    keys: list[tuple[str, str]] = field(default_factory=list)  # (text on screen, key name) in order
    memory_mb: int = 64             # the PC's RAM (QEMU -m; nbdboot --memory is the part above 1 MiB)
    qemu_timeout: float = 60.0
    nbdboot_timeout: float = 30.0
    slow: bool = False
    xfail: str | None = None        # why nbdboot cannot pass it yet
    flaky: bool = False             # ... though it passes in some runs (a non-strict xfail)
    qemu_xfail: str | None = None   # why QEMU+SeaBIOS cannot either (the texts then come from the sibling cases)
    gives_up: bool = False          # the guest ends by handing back to the BIOS (int 18h): SeaBIOS tries its
                                    # next device, nbdboot ends the run with exit 5; the texts must be there
    serial: list[str] = field(default_factory=list)  # texts the guest sends to COM1 by the time `expect` shows

    def keys_after_text(self) -> list[tuple[str, str]]:
        """(screen text, keys in the --keys language) pairs: type the keys once the text shows."""
        return [(text, KEYS[name][0]) for text, name in self.keys]

    def qemu_keys(self) -> list[tuple[str, list[str]]]:
        return [(text, KEYS[name][1]) for text, name in self.keys]


HELLO = "NBDBOOT-CORPUS the default label booted"
IPXE_BANNER = "iPXE 1.0.0+git-20190125.36a4c85-5.1 -- Open Source Network Boot Firmware"
PANIC = "Kernel panic - not syncing: VFS: Unable to mount root fs"

# Why nbdboot cannot pass a case yet: what the guest waits on, and the device or feature that would let it go on.
LINUX_SLOW = ("too slow for this case's 45 s budget, not broken: it reaches 'Select a language' in 217 s on the stock "
              "Unicorn wheel (run by hand on the quiet 2-core VM, 2026-12-03; QEMU+SeaBIOS takes 101 s) and in 82 s with "
              "`make unicorn-fast`'s Unicorn; both installer cases run to the end would add 7 minutes to CI. Guest code "
              "runs 3-11x slower than QEMU's TCG on the stock wheel (docs/perf.md, 'The store slow path')")
CASES: dict[str, Case] = {
    # SYSLINUX as installed: PROMPT 1, a timeout, the default label.
    "syslinux-timeout": Case("corpus-sl-timeout.img", ["NBDBOOT-CORPUS SYSLINUX waits 1 s at boot:", "boot:", HELLO],
                             nbdboot_timeout=15),
    "syslinux-enter": Case("corpus-sl-enter.img", ["NBDBOOT-CORPUS SYSLINUX waits for Enter at boot:", HELLO],
                           keys=[("boot:", "enter")], nbdboot_timeout=15),
    "syslinux-menu": Case("corpus-sl-menu.img", [HELLO], nbdboot_timeout=15),
    "syslinux-hdt": Case("corpus-sl-hdt.img", ["Hardware Detection Tool", "Main Menu", "Switch to CLI"],
                         nbdboot_timeout=30),
    # GRUB 2: a menu with a countdown whose default is our Multiboot kernel; Linux through both protocols.
    "grub-menu-multiboot": Case("corpus-grub-menu.iso", ["NBDBOOT-MB multiboot ok"]),
    "grub-linux16": Case("corpus-grub-linux16.iso", [PANIC], qemu_timeout=120, nbdboot_timeout=300, slow=True),
    # The same through the 32-bit protocol with console=ttyS0 console=tty0: the messages on COM1 too.
    "grub-linux": Case("corpus-grub-linux.iso", [PANIC], qemu_timeout=120, nbdboot_timeout=300, slow=True,
                       serial=["Linux version ",
                               "Kernel command line: BOOT_IMAGE=/boot/linux vga=normal no-scroll console=ttyS0 "
                               "console=tty0",
                               "printk: console [ttyS0] enabled",
                               "ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A",
                               PANIC]),
    # iPXE from Debian's ipxe package, no NIC: its banner and autoboot's failure, or its shell after Ctrl-B.
    "ipxe-syslinux": Case("corpus-sl-ipxe.img", [IPXE_BANNER, "No more network devices"], gives_up=True,
                          nbdboot_timeout=60),
    "ipxe-syslinux-shell": Case("corpus-sl-ipxe.img", [IPXE_BANNER, "iPXE>"], keys=[("Features:", "ctrl-b")],
                                nbdboot_timeout=30),
    "ipxe-grub-shell": Case("corpus-grub-ipxe.iso", [IPXE_BANNER, "iPXE>"], keys=[("Features:", "ctrl-b")],
                            nbdboot_timeout=30),
    "ipxe-iso-shell": Case("corpus-ipxe.iso", ["iPXE ISO boot image", IPXE_BANNER, "iPXE>"], media="cd",
                           keys=[("Features:", "ctrl-b")], nbdboot_timeout=30),
    # memtest86+ 6.10's BIOS image through GRUB's `linux` (as /etc/grub.d/20_memtest86+ does): its header, the
    # memory it found, and a pass reaching test #4.
    "memtest-grub": Case("corpus-grub-memtest.iso", ["Memtest86+ v6.10", "Memory  :", "Test #4"], nbdboot_timeout=20,
                         xfail=("too slow, not broken (it passes in about 200 s, over this case's 20 s budget): Unicorn's store "
                                "slow path (docs/perf.md, 'The store slow path'): Unicorn 2.1 never clears TLB_NOTDIRTY "
                                "on RAM mapped read-write-execute, so every guest store leaves the inline path for "
                                "notdirty_write(); memtest86+'s start-up bandwidth timing, `rep movsd` over 2 MiB and "
                                "16 MiB buffers, runs at about 5 MB/s (QEMU gets through it within 0.8 s)")),
    # Debian's installer: SYSLINUX from the export, and an ISOLINUX CD of the netboot tree with its menu. With
    # 256 MiB bookworm's i386 installer says "Insufficient memory" (273 MB), with 384 MiB "Entering low memory mode".
    "debian-installer-syslinux": Case("corpus-sl-di.img", ["Run /init as init process", "Select a language"],
                                      memory_mb=1024, qemu_timeout=240, nbdboot_timeout=45, slow=True,
                                      xfail=LINUX_SLOW),
    "debian-installer-isolinux": Case("corpus-di-isolinux.iso",
                                      ["Debian GNU/Linux installer menu (BIOS mode)", "Select a language"],
                                      media="cd", keys=[("installer menu", "enter")], memory_mb=1024,
                                      qemu_timeout=240, nbdboot_timeout=45, slow=True,
                                      xfail="the menu takes the Enter and boots the kernel, then " + LINUX_SLOW),
}

# FreeDOS boot floppies of every PC size (the AUTOEXEC.BAT names the size).
for _kib in (160, 180, 320, 360, 640, 720, 1200, 1440, 2880):
    CASES[f"freedos-{_kib}k"] = Case(f"corpus-fd{_kib}.img", [f"NBDBOOT-FD{_kib} FreeDOS from a {_kib}K floppy",
                                                              "A:\\>"], media="floppy", nbdboot_timeout=15)
CASES["freedos-640k"] = replace(
    CASES["freedos-640k"], qemu_timeout=8,
    qemu_xfail=("QEMU's floppy format table has no 640K (80x2x8) format: SeaBIOS reads it with a 720K "
                "geometry and hangs after the boot sector's 'FreeDOS'; the texts are those of the other sizes"))
