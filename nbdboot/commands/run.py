"""`nbdboot run`: boot a disk served over NBD in the emulated PC.

The export is presented by the BIOS as drive 80h (hard disk, as iPXE's sanboot
does) unless --drive says otherwise. --image FILE serves FILE with the embedded
NBD server on loopback and boots it over TCP: the same path as a remote export.
"""

from __future__ import annotations

import argparse
import sys
import time

from nbdboot.bios.int13 import looks_like_floppy
from nbdboot.console.keys import parse_keys
from nbdboot.console.output import HeadlessConsole, TerminalConsole
from nbdboot.console.screen import screen_text
from nbdboot.errors import EXIT_CODES_HELP, EXIT_EXPECT_FAILED, LocalIOError, UsageError
from nbdboot.machine.machine import DEFAULT_MEMORY_MB, GuestCrash, Machine
from nbdboot.machine.session import Session

CONNECT_OPTIONS = dict(connect_timeout=10.0, timeout=30.0, retries=2, retry_delay=1.0)


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
        import os

        from nbdboot.disk.file import FileDevice
        from nbdboot.nbd.server import NbdServer
        if not os.path.isfile(args.image):
            raise LocalIOError(f"no such image file: {args.image}")
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

    def factory():
        return NbdDevice(uri, **CONNECT_OPTIONS)

    return factory, str(uri), server, local


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


def handler(args) -> int:
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if not 1 <= args.memory <= 3072:
        raise UsageError("--memory must be between 1 and 3072 MiB")
    _check_media(args.drive, args.media)
    keys = parse_keys(args.keys) if args.keys else []
    factory, source_uri, server, local = _source(args)
    device = None
    console = None
    started = time.monotonic()
    try:
        device = _open_disk(args, factory, source_uri)
        drive = _drive_number(args.drive, args.media, device)
        machine = Machine(memory_mb=args.memory)
        machine.bios.disk.add_drive(drive, device, media="auto" if args.media in ("auto", "floppy") else args.media)
        machine.bios.keyboard.type_keys(keys)
        live = not args.headless and sys.stdout.isatty() and sys.stdin.isatty()
        console = TerminalConsole() if live else HeadlessConsole()
        console.attach(machine)
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
        if outcome.met or not args.expect:
            return 0
        print(f"nbdboot: timeout after {args.timeout:g}s waiting for {outcome.missing!r}", file=sys.stderr)
        return EXIT_EXPECT_FAILED
    finally:
        if console is not None:
            console.close()
        if device is not None:
            device.close()
            _report_copy(device, time.monotonic() - started)
        if server is not None:
            server.stop()
            local.close()


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
    p.add_argument("--media", choices=("auto", "hdd", "floppy", "cd"), default="auto",
                   help="how the export is presented (default auto: an ISO9660 export is a CD with 2048-byte "
                        "sectors); e.g. --media cd boots a hybrid ISO through El Torito")
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
