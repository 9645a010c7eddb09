"""`nbdboot run`: boot a disk served over NBD in the emulated PC.

The export is presented by the BIOS as drive 80h (hard disk, as iPXE's sanboot
does) unless --drive says otherwise. --image FILE serves FILE with the embedded
NBD server on loopback and boots it over TCP: the same path as a remote export.
--disk gives the PC disks of its own (local files or NBD exports); the export is
hooked on top of them as iPXE hooks a SAN disk: a disk it displaces from its
number is reached at the export's natural number (docs/int13.md, "Drives").
"""

from __future__ import annotations

import argparse
import math
import os
import re
import select
import sys
import time
from typing import NamedTuple

from nbdboot import interrupt
from nbdboot.bios.int13 import looks_like_floppy
from nbdboot.console.keys import parse_keys
from nbdboot.console.output import HeadlessConsole, TerminalConsole
from nbdboot.console.screen import screen_text
from nbdboot.errors import EXIT_CODES_HELP, EXIT_EXPECT_FAILED, LocalIOError, UsageError
from nbdboot.machine.machine import DEFAULT_MEMORY_MB, GuestCrash, Machine
from nbdboot.machine.session import Session
from nbdboot.nbd.uri import looks_like_uri

# iPXE's budget: 15 s of silence per command, 10 reopen tries (--retries), but 1 s apart (--retry-delay) rather
# than 5 s, so a server restart is ridden out and a server gone for good reaches the guest as 04h within ~10 s.
CONNECT_OPTIONS = dict(connect_timeout=10.0, timeout=15.0, retries=10, retry_delay=1.0)


def parse_drive(text: str) -> int | str:
    if text == "auto":
        return "auto"
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a drive number: {text!r} (0x80, 0x00 or auto)") from None
    if not 0 <= value <= 0xFF or value in (0x7F, 0xFF):
        raise argparse.ArgumentTypeError(f"BIOS drive number out of range: {text}")
    return value


class DiskSpec(NamedTuple):
    """One --disk: a file or NBD export, and the BIOS drive asked for (None: the next free hard disk)."""
    source: str
    number: int | None


_DRIVE_SUFFIX = re.compile(r"^(0[xX][0-9a-fA-F]+|[0-9]+)$")
_HOSTPORT = re.compile(r"^(\[[^\]]+\]|[^:/\[\]@]+):[0-9]+$")
DISK_NUMBERS = "0x00-0x03 for floppies, 0x80-0xFE for hard disks"


def parse_disk(text: str) -> DiskSpec:
    """`--disk FILE_OR_URI[@DRIVE]`. An '@' followed by no number belongs to a URI (nbd://user@host/)."""
    source, at, suffix = text.rpartition("@")
    if not at:
        return DiskSpec(text, None)
    if not _DRIVE_SUFFIX.match(suffix):
        if looks_like_uri(text):
            return DiskSpec(text, None)
        raise argparse.ArgumentTypeError(f"not a drive number after '@' in {text!r} ({DISK_NUMBERS})")
    try:
        number = int(suffix, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a drive number after '@' in {text!r} ({DISK_NUMBERS})") from None
    if not (0 <= number <= 3 or 0x80 <= number <= 0xFE):
        raise argparse.ArgumentTypeError(f"no BIOS disk can be {suffix} in {text!r} ({DISK_NUMBERS})")
    if not source:
        raise argparse.ArgumentTypeError(f"no file or URI before '@' in {text!r}")
    return DiskSpec(source, number)


def number_disks(specs: list[DiskSpec]) -> list[tuple[int, str]]:
    """(BIOS drive, source) per --disk: explicit numbers as given, the rest 80h, 81h... in order, skipping
    numbers already taken, as a PC's BIOS numbers the disks it finds."""
    numbered: dict[int, str] = {}
    for spec in specs:
        if spec.number is None:
            continue
        if spec.number in numbered:
            raise UsageError(f"two --disk at BIOS drive {spec.number:#04x}")
        numbered[spec.number] = spec.source
    number = 0x80
    for spec in specs:
        if spec.number is not None:
            continue
        while number in numbered:
            number += 1
        if number > 0xFE:
            raise UsageError("too many --disk: hard disks run out at 0xFE")
        numbered[number] = spec.source
    return sorted(numbered.items())


def open_local_disk(source: str):
    """A --disk as the PC's own disk: an NBD export (URI or HOST:PORT), else a local file, writable when the
    file is (a local disk takes writes)."""
    from nbdboot.disk.file import FileDevice
    from nbdboot.disk.nbd import NbdDevice
    from nbdboot.nbd.uri import parse_uri
    if looks_like_uri(source) or (not os.path.exists(source) and _HOSTPORT.match(source)):
        return NbdDevice(parse_uri(source), **CONNECT_OPTIONS)
    if not os.path.exists(source):
        raise LocalIOError(f"no such disk image file: {source}")
    if os.path.isdir(source):
        raise LocalIOError(f"--disk {source} is a directory, not a disk image")
    device = FileDevice(source, read_only=not os.access(source, os.W_OK))
    if device.size < 512:
        device.close()
        raise UsageError(f"--disk {source} is smaller than one 512-byte sector")
    return device


def attach_local_disks(machine, numbered: list[tuple[int, str]], opened: list) -> None:
    """Open each (number, source) and give it to the PC's firmware; `opened` collects devices to close."""
    for number, source in numbered:
        device = open_local_disk(source)
        opened.append(device)
        machine.bios.disk.add_firmware_drive(number, device)


def _source(args):
    """(source_factory, source URI, embedded server, its file) for the chosen export.

    The factory opens a new connection each call: the guest's disk takes one and a
    deploy/restore copier takes its own.
    """
    from nbdboot.disk.nbd import NbdDevice
    from nbdboot.nbd.uri import parse_uri

    sources = [bool(args.uri), bool(args.server), bool(args.image), bool(args.restore_from)]
    if sum(sources) != 1:
        raise UsageError("give exactly one of URI, --server HOST:PORT, --image FILE or --restore-from URI")
    if args.export is not None and not args.server:
        raise UsageError("--export goes with --server")
    if bool(args.restore_from) != bool(args.to):
        raise UsageError("--restore-from URI and --to TARGET go together")
    if args.overlay and (args.deploy_to or args.to):
        raise UsageError("--overlay cannot be combined with --deploy-to or --restore-from")
    if args.deploy_to and args.to:
        raise UsageError("--deploy-to and --restore-from cannot be combined")
    if args.since_bitmap and not args.restore_from:
        raise UsageError("--since-bitmap goes with --restore-from")
    if (args.map_path or args.sync != "each") and not (args.overlay or args.deploy_to or args.to):
        raise UsageError("--map and --sync go with --overlay, --deploy-to or --restore-from")

    server = local = None
    if args.image:
        from nbdboot.disk.file import FileDevice
        from nbdboot.nbd.server import NbdServer
        if os.path.isdir(args.image):
            raise LocalIOError(f"--image {args.image} is a directory, not a disk image")
        if not os.path.isfile(args.image):
            raise LocalIOError(f"no such image file: {args.image}")
        _refuse_image_as_disk(args.image, args.disks or [])
        # With an overlay or a deploy target the guest never writes the image itself.
        writable = os.access(args.image, os.W_OK) and not (args.overlay or args.deploy_to)
        local = FileDevice(args.image, read_only=not writable)
        server = NbdServer(local, host="127.0.0.1", port=0)
        try:
            server.start()
        except BaseException:
            server.stop()
            local.close()
            raise
        uri = server.uri
    elif args.server:
        parsed = parse_uri(args.server)
        if args.export is not None:
            parsed = parsed.with_export(args.export)
        uri = parsed
    else:
        uri = parse_uri(args.restore_from or args.uri)

    options = dict(CONNECT_OPTIONS, retries=args.retries, retry_delay=args.retry_delay)

    def factory():
        return NbdDevice(uri, **options)

    return factory, str(uri), server, local


def _refuse_image_as_disk(image: str, disks: list[DiskSpec]) -> None:
    """One file as the export and as a PC disk would be two drives writing one file behind each other's back."""
    for spec in disks:
        try:
            same = os.path.samefile(image, spec.source)
        except OSError:
            continue
        if same:
            raise UsageError(f"--image and --disk name the same file: {spec.source}")


def _open_disk(args, factory, source_uri):
    """The disk the guest boots: the export alone, under an overlay, or while deploying/restoring."""
    from nbdboot.disk.store import open_guest_disk
    if args.connections < 1 or args.connections > 64:
        raise UsageError("--connections must be between 1 and 64")
    return open_guest_disk(factory, overlay=args.overlay, deploy_to=args.deploy_to or args.to,
                           map_path=args.map_path, sync=args.sync, connections=args.connections,
                           since_bitmap=args.since_bitmap, source_spec=source_uri)


def _check_media(drive, media: str) -> None:
    if drive in (None, "auto"):
        return
    if media == "floppy" and drive >= 0x80:
        raise UsageError(f"--media floppy needs a floppy drive number below 0x80, not {drive:#04x}")
    if media in ("hdd", "cd") and drive < 0x80:
        raise UsageError(f"--media {media} needs a drive number from 0x80, not {drive:#04x}")


def _drive_number(drive, media: str, device) -> int:
    """The BIOS drive the export becomes: numbers below 80h are floppies (as in iPXE)."""
    if drive is None:
        return 0x00 if media == "floppy" else 0x80
    if drive == "auto":
        if media == "floppy":
            return 0x00
        return 0x00 if media == "auto" and looks_like_floppy(device) else 0x80
    return drive


def _check_numbers(args) -> None:
    """nan compares false with everything, so each bound is written to fail for it."""
    if args.timeout is not None and not (0 < args.timeout < math.inf):
        raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    if not 1 <= args.memory <= 3072:
        raise UsageError("--memory must be between 1 and 3072 MiB")
    if not 0 <= args.retries <= 1000:
        raise UsageError(f"--retries must be between 0 and 1000, not {args.retries}")
    if not 0 <= args.retry_delay <= 3600:
        raise UsageError(f"--retry-delay must be between 0 and 3600 seconds, not {args.retry_delay}")


def _arm_deadline(timeout: float | None) -> None:
    """--timeout bounds the whole run: NBD waits and reconnects in the guest's int 13h calls end there too."""
    if timeout is not None:
        interrupt.set_deadline(time.monotonic() + timeout, f"--timeout {timeout:g} s")


def handler(args) -> int:
    _check_numbers(args)
    _check_media(args.drive, args.media)
    keys = parse_keys(args.keys) if args.keys else []
    local_disks = number_disks(args.disks or [])
    factory, source_uri, server, local = _source(args)
    device = None
    console = None
    undo_status = None
    opened: list = []
    started = time.monotonic()
    _arm_deadline(args.timeout)
    try:
        machine = Machine(memory_mb=args.memory)
        attach_local_disks(machine, local_disks, opened)
        device = _open_disk(args, factory, source_uri)
        drive = _drive_number(args.drive, args.media, device)
        media = "auto" if args.media in ("auto", "floppy") else args.media
        drive = machine.bios.disk.add_drive(drive, device, media=media).number
        machine.bios.keyboard.type_keys(keys)
        live = not args.headless and sys.stdout.isatty() and sys.stdin.isatty()
        console = TerminalConsole() if live else HeadlessConsole()
        console.attach(machine)
        if live:
            undo_status = _status_line_while_live(console, machine)
        machine.power_on(drive)
        session = Session(machine, console, args.expect or [], args.timeout)
        try:
            outcome = session.run()
        except GuestCrash as crash:
            _finish(console, machine, args)
            console = None
            print(f"guest crash: {crash}\n{crash.report}", file=sys.stderr)
            raise
        except BaseException:
            _finish(console, machine, args)
            console = None
            raise
        _finish(console, machine, args)
        console = None
        _raise_if_disk_lost(machine, outcome)
        if outcome.met or not args.expect:
            return 0
        print(f"nbdboot: timeout after {args.timeout:g}s waiting for {outcome.missing!r}", file=sys.stderr)
        return EXIT_EXPECT_FAILED
    finally:
        interrupt.set_deadline(None)
        if console is not None:
            console.close()
        if undo_status is not None:
            undo_status()
        if device is not None:
            device.close()
            _report_copy(device, time.monotonic() - started)
        if server is not None:
            server.stop()
            local.close()
        for disk in opened:
            disk.close()


def _status_line_while_live(console, machine):
    """On a live terminal, NBD news (a reconnect under way, a failed int 13h call) goes to a status line
    below the guest's 25 rows, or to the window title on a terminal of 25 rows, never into the guest's
    screen; and while the guest waits on the network the screen is kept drawn and keys are read, so
    Ctrl-C works then too.
    Returns what undoes it; the last message is printed to stderr once the screen is gone."""
    import logging

    from nbdboot.console.keys import terminal_keys
    from nbdboot.nbd.client import status_listeners
    try:
        rows = os.get_terminal_size(sys.stdout.fileno()).lines
    except OSError:
        rows = 25
    last: list[str] = []

    def show(text: str | None) -> None:
        line = f"nbdboot: {text}" if text else ""
        if text:
            last[:] = [line]
        if rows > 25:
            sys.stdout.write(f"\x1b7\x1b[26;1H\x1b[7m{line[:79]}\x1b[0m\x1b[K\x1b8")
        else:
            sys.stdout.write(f"\x1b]2;{line or 'nbdboot'}\x07")
        sys.stdout.flush()

    def on_client(_client, text):
        show(text)

    class ToStatusLine(logging.Handler):
        def emit(self, record):
            show(record.getMessage().removeprefix("nbdboot: "))

    def poll() -> None:
        console.update(machine)   # what the guest printed before it began to wait shows now, not after
        if not select.select([console.fd], [], [], 0)[0]:
            return
        data = os.read(console.fd, 256).decode("latin-1")
        if "\x03" in data:
            raise KeyboardInterrupt
        machine.bios.keyboard.type_keys(terminal_keys(data), start_now=True)

    logger = logging.getLogger("nbdboot")
    handler = ToStatusLine()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    status_listeners.append(on_client)
    interrupt.set_poll(poll)

    def undo() -> None:
        interrupt.set_poll(None)
        status_listeners.remove(on_client)
        logger.removeHandler(handler)
        logger.propagate = propagate
        if last:
            print(last[0], file=sys.stderr)

    return undo


def _raise_if_disk_lost(machine, outcome) -> None:
    """A run that reached --timeout while its disk's connection was gone for good ends with that NBD error
    (exit 3), with or without --expect: the guest was told 04h and could not have done its work."""
    lost = machine.bios.disk.lost_connection
    if outcome.timed_out and lost is not None:
        raise lost


def _report_copy(device, elapsed: float) -> None:
    """Deploy/restore runs end with what the copier did (it resumes next time if unfinished)."""
    copier = getattr(device, "copier", None)
    if copier is None:
        return
    from nbdboot.disk.deploy import summary
    state = "complete" if copier.done else "interrupted (resumes on the next run)"
    print(f"nbdboot: copy {state}: {summary(device.stats, elapsed)}", file=sys.stderr)


def _finish(console, machine, args) -> None:
    console.finish(machine)
    if args.screen_out:
        try:
            with open(args.screen_out, "w", encoding="utf-8") as f:
                f.write(screen_text(machine.cpu))
        except OSError as e:
            raise LocalIOError(f"cannot write {args.screen_out}: {e.strerror}") from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="boot an NBD export (or a local image) in the emulated PC",
        description=__doc__, epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("uri", nargs="?", metavar="URI", help="nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH")
    p.add_argument("--server", metavar="HOST:PORT", help="NBD server to boot from")
    p.add_argument("--export", metavar="NAME", help="export name on --server (default: the default export)")
    p.add_argument("--image", metavar="FILE",
                   help="serve FILE with the embedded NBD server and boot it (guest writes go to FILE)")
    store = p.add_argument_group("local store (diskless overlay, live deploy, live restore)")
    store.add_argument("--overlay", metavar="FILE",
                       help="keep guest writes in FILE, never on the server; reuse FILE to continue")
    store.add_argument("--deploy-to", metavar="TARGET",
                       help="boot at once while copying the export to TARGET (file, block device or NBD URI)")
    store.add_argument("--restore-from", metavar="URI", help="boot from a backup export while restoring it --to TARGET")
    store.add_argument("--to", metavar="TARGET", help="restore target (with --restore-from)")
    store.add_argument("--since-bitmap", metavar="NAME",
                       help="restore only blocks dirty in the server's qemu:dirty-bitmap:NAME")
    store.add_argument("--map", dest="map_path", metavar="PATH", help="block map (default TARGET.nbdboot-map)")
    store.add_argument("--sync", choices=("each", "periodic"), default="each",
                       help="when a guest write counts as persisted: each write (default) or periodically")
    store.add_argument("--connections", type=int, default=4, metavar="N",
                       help="copier connections when the server advertises multi-conn (default 4)")
    p.add_argument("--drive", type=parse_drive, default=None, metavar="0x80|0x00|auto",
                   help="BIOS drive number of the export (default 0x80, 0x00 with --media floppy; "
                        "auto: floppy for a floppy-sized FAT image)")
    p.add_argument("--disk", dest="disks", action="append", type=parse_disk, metavar="FILE_OR_URI[@DRIVE]",
                   help="a disk the PC has of its own (repeatable): a local file (writable if the file is) or an "
                        "NBD URI/HOST:PORT, numbered 0x80, 0x81... in order unless @DRIVE says (0x00-0x03: "
                        "floppies); the export takes --drive and a disk it displaces moves to the next free number")
    p.add_argument("--media", choices=("auto", "hdd", "floppy", "cd"), default="auto",
                   help="how the export is presented (default auto: an ISO9660 export is a CD with 2048-byte "
                        "sectors); e.g. --media cd boots a hybrid ISO through El Torito")
    p.add_argument("--retries", type=int, default=CONNECT_OPTIONS["retries"], metavar="N",
                   help="times to reopen a lost NBD connection (and re-send) before the guest sees a disk error "
                        f"(default {CONNECT_OPTIONS['retries']})")
    p.add_argument("--retry-delay", type=float, default=CONNECT_OPTIONS["retry_delay"], metavar="SECONDS",
                   help=f"wait between reopen tries (default {CONNECT_OPTIONS['retry_delay']:g}; iPXE waits 5)")
    p.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB, metavar="MiB",
                   help=f"extended memory above 1 MiB (default {DEFAULT_MEMORY_MB})")
    p.add_argument("--expect", action="append", metavar="TEXT",
                   help="exit 0 once TEXT is on screen (repeatable: in order)")
    p.add_argument("--keys", metavar="TEXT",
                   help="keystrokes typed once the guest waits for a key: text, \\n, {enter}, {esc}, "
                        "{f1}..{f12}, {pause:SECONDS}")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="give up (exit 1 if an --expect is missing) after SECONDS")
    p.add_argument("--screen-out", metavar="FILE", help="write the final 80x25 screen to FILE")
    p.add_argument("--headless", action="store_true",
                   help="stream guest text to stdout and print the final screen (default without a terminal)")
    p.set_defaults(func=handler)
