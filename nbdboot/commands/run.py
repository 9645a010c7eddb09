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
import dataclasses
import math
import sys
import time

from nbdboot import api, interrupt
from nbdboot.api import CONNECT_OPTIONS, DiskSpec, attach_local_disks, number_disks  # noqa: F401 (tests use them here)
from nbdboot.console.display import Display, add_display_options
from nbdboot.console.keys import keys_help
from nbdboot.console.output import HeadlessConsole, TerminalConsole
from nbdboot.debug import options as debug_options
from nbdboot.errors import EXIT_CODES_HELP, EXIT_EXPECT_FAILED, BreakpointReached, UsageError
from nbdboot.machine.machine import DEFAULT_MEMORY_MB, GuestCrash, GuestPoweredOff
from nbdboot.units import seconds, size_mib


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


def parse_disk(text: str) -> DiskSpec:
    """argparse type of `--disk FILE_OR_URI[@DRIVE]` (nbdboot.api.parse_disk)."""
    try:
        return api.parse_disk(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _Script(argparse.Action):
    """--expect and --keys in the order given: keys before the first --expect are typed once the guest waits
    for a key; keys after an --expect are typed as soon as that text has been seen."""

    def __call__(self, parser, namespace, value, option_string=None):
        script = getattr(namespace, "script", None) or []
        script.append((self.dest, value))
        namespace.script = script
        if self.dest == "expect":
            namespace.expect = (namespace.expect or []) + [value]
        elif not any(kind == "expect" for kind, _ in script):
            namespace.keys = value if namespace.keys is None else namespace.keys + value


def _after_expect(args) -> dict[int, str]:
    """Keys to type once the Nth --expect (0-based) is met."""
    after: dict[int, str] = {}
    seen = -1
    for kind, value in getattr(args, "script", None) or []:
        if kind == "expect":
            seen += 1
        elif seen >= 0:
            after[seen] = after.get(seen, "") + value
    return after


def options_from_args(args) -> api.BootOptions:
    """The BootOptions of a parsed command line (same names)."""
    names = {f.name for f in dataclasses.fields(api.BootOptions)}
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    values["disks"] = list(args.disks or [])
    return api.BootOptions(**values)


def _check_numbers(args) -> None:
    """nan compares false with everything, so each bound is written to fail for it."""
    if args.timeout is not None and not (0 < args.timeout < math.inf):
        raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout}")


def _arm_deadline(timeout: float | None) -> None:
    """--timeout bounds the whole run: NBD waits and reconnects in the guest's int 13h calls end there too."""
    if timeout is not None:
        interrupt.set_deadline(time.monotonic() + timeout, f"--timeout {timeout:g} s")


def handler(args) -> int:
    _check_numbers(args)
    options = options_from_args(args)
    options.check()
    serial_stdio = Display.serial_stdio_in(args)
    live = not args.headless and sys.stdout.isatty() and sys.stdin.isatty() and not serial_stdio
    _arm_deadline(args.timeout)
    console = undo_status = None
    try:
        console = TerminalConsole() if live else HeadlessConsole(sys.stderr if serial_stdio else None)
        pc = api.Boot(options, console=console)
    except BaseException:
        interrupt.set_deadline(None)
        if console is not None:
            console.close()
        raise
    if live:
        undo_status = _status_line_while_live(console, pc.machine)
    finished = False
    debugging = None
    exit_status = None
    try:
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        debugging = debug_options.attach(pc.machine, args)
        if debugging is not None:
            debugging.bind(pc._session, deadline)
        text = None  # the --expect text being waited for
        try:
            then_type = _after_expect(args)
            for index, text in enumerate(args.expect or []):
                left = None if deadline is None else max(deadline + _paused(debugging) - time.monotonic(), 1e-6)
                pc.wait_for(text, timeout=left)
                if index in then_type:
                    pc.type(then_type[index], now=True)
            text = None
            if not args.expect:
                pc.run(args.timeout)
        except api.WaitTimeout as e:
            _finish(console, pc, args, failed=True)
            finished = True
            print(f"nbdboot: timeout after {args.timeout:g}s waiting for '{e.pattern}'", file=sys.stderr)
            exit_status = EXIT_EXPECT_FAILED
            return EXIT_EXPECT_FAILED
        except GuestPoweredOff as off:
            _finish(console, pc, args)
            finished = True
            if text is not None:
                print(f"nbdboot: {off} before '{text}' appeared", file=sys.stderr)
                exit_status = EXIT_EXPECT_FAILED
                return EXIT_EXPECT_FAILED
            print(f"nbdboot: {off}", file=sys.stderr)
            exit_status = 0
            return 0
        except GuestCrash as crash:
            _finish(console, pc, args, failed=True)
            finished = True
            print(f"guest crash: {crash}\n{crash.report}", file=sys.stderr)
            raise
        except BreakpointReached as stop:
            _finish(console, pc, args)
            finished = True
            print(f"{stop}\n{stop.report}", file=sys.stderr)
            raise
        except BaseException:
            _finish(console, pc, args, failed=True)
            finished = True
            raise
        _finish(console, pc, args)
        finished = True
        exit_status = 0
        return 0
    finally:
        if debugging is not None:
            debugging.close(exit_status)
        interrupt.set_deadline(None)
        if not finished:
            try:
                console.close()
            except OSError:
                pass   # SIGHUP: the terminal is gone, there is nothing left to restore
        if undo_status is not None:
            undo_status()
        pc.close()
        _report_copy(pc.disk, time.monotonic() - pc.started)


def _paused(debugging) -> float:
    """Seconds a debugger has held the guest stopped: --timeout does not count them."""
    return 0.0 if debugging is None else debugging.paused


def _status_line_while_live(console, machine):
    """On a live terminal, NBD news (a reconnect under way, a failed int 13h call) goes to a status line
    below the guest's 25 rows, or to the window title on a terminal of 25 rows, never into the guest's
    screen; and while the guest waits on the network the screen is kept drawn and keys are read, so
    Ctrl-A x works then too.
    Returns what undoes it; the last message is printed to stderr once the screen is gone."""
    import logging

    from nbdboot.nbd.client import status_listeners
    last: list[str] = []

    def show(text: str | None) -> None:
        line = f"nbdboot: {text}" if text else None
        if line:
            last[:] = [line]
        console.status(line)

    def on_client(_client, text):
        show(text)

    class ToStatusLine(logging.Handler):
        def emit(self, record):
            show(record.getMessage().removeprefix("nbdboot: "))

    def poll() -> None:
        console.update(machine)   # what the guest printed before it began to wait shows now, not after
        keys = console.keys()     # Ctrl-A x quits here too
        if keys:
            machine.bios.keyboard.type_keys(keys, start_now=True)

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


def _report_copy(device, elapsed: float) -> None:
    """Deploy/restore runs end with what the copier did (it resumes next time if unfinished)."""
    copier = getattr(device, "copier", None)
    if copier is None:
        return
    from nbdboot.console.progress import summary
    state = "complete" if copier.done else "interrupted (resumes on the next run)"
    print(f"nbdboot: copy {state}: {summary(device.stats, elapsed)}", file=sys.stderr)


def _finish(console, pc, args, failed: bool = False) -> None:
    console.finish(pc.machine)
    if args.screen_out:
        pc.screenshot(args.screen_out, text=True)
    for path in (args.screenshot, args.screenshot_on_fail if failed else None):
        if path:
            pc.screenshot(path)


RESET_POWER_TABLE = """\
| the guest | default | `--no-reboot` |
|---|---|---|
| `hlt` with interrupts on | waits for the next interrupt (virtual time skips ahead) | same |
| `hlt` with interrupts off (`cli; hlt`) | exit 4 "halted" | same |
| runs into zeroed memory, or takes the same exception for ever | exit 4, crash report | same |
| triple fault (also an interrupt beyond a real-mode IDT limit, e.g. after `lidt` of limit 0) | reset, boots again | exit 4, crash report |
| the same triple fault again after that reset | exit 4 "reset loop", crash report | - |
| 8042 reset (`out 64h,FEh`; output port bit 0 low) | reset, boots again | exit 8 |
| port 92h bit 0, port CF9h reset | reset, boots again | exit 8 |
| `jmp F000:FFF0` (or F000:E05B) | reset, boots again | exit 8 |
| int 19h from the guest | boots again from the boot drive, no reset (as SeaBIOS) | exit 8 |
| int 18h | exit 5 "boot failed" | same |
| APM power off (int 15h 5307h BX=1 CX=3); "Shutdown" to port 8900h | exit 0 "guest powered off" (1 if an `--expect` text was not seen) | same |
"""


def reset_power_help() -> str:
    """The README's reset/power/halt table as --help prints it (one table, one source)."""
    lines = ["reset, power and halt (what the guest does: default run / with --no-reboot):"]
    for row in RESET_POWER_TABLE.splitlines()[2:]:
        what, default, no_reboot = (cell.strip().replace("`", "") for cell in row.strip("|").split("|"))
        lines.append(f"  {what}:\n      {default} / {no_reboot}")
    return "\n".join(lines)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="boot an NBD export (or a local image) in the emulated PC",
        description=__doc__, epilog=reset_power_help() + "\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("uri", nargs="?", metavar="URI", help="nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH")
    p.add_argument("--server", metavar="HOST:PORT", help="NBD server to boot from")
    p.add_argument("--export", metavar="NAME", help="export name on --server (default: the default export, '')")
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
                   help="BIOS drive number of the export (default auto: 0x00 for a floppy-sized FAT image "
                        "without a partition table or with --media floppy, else 0x80)")
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
    p.add_argument("--retry-delay", type=seconds, default=CONNECT_OPTIONS["retry_delay"], metavar="SECONDS",
                   help=f"wait between reopen tries (default {CONNECT_OPTIONS['retry_delay']:g}s; iPXE waits 5s)")
    p.add_argument("--no-reboot", action="store_true",
                   help="a guest reset (triple fault, 8042 or port 92h/CF9h reset, jump to F000:FFF0, int 19h "
                        "from the guest) ends the run instead of booting again: exit 4 with a crash report for a "
                        "triple fault, exit 8 otherwise (QEMU's -no-reboot)")
    p.add_argument("--memory", type=size_mib, default=DEFAULT_MEMORY_MB, metavar="SIZE",
                   help=f"extended memory above 1 MiB, in MiB or with a suffix: 64, 64M, 1G "
                        f"(default {DEFAULT_MEMORY_MB}M)")
    p.add_argument("--expect", action=_Script, metavar="TEXT",
                   help="exit 0 once TEXT is on screen (repeatable: in order; default: none, run until "
                        "--timeout or Ctrl-A x)")
    p.add_argument("--keys", action=_Script, metavar="TEXT",
                   help="keystrokes typed once the guest waits for a key; after an --expect, typed as soon as "
                        "that text is seen (repeatable, in order with --expect): " + keys_help())
    p.add_argument("--timeout", type=seconds, metavar="DURATION",
                   help="give up (exit 1 if an --expect is missing) after DURATION: 20, 20s, 500ms, 2m "
                        "(default: none)")
    p.add_argument("--screen-out", metavar="FILE", help="write the final 80x25 screen to FILE (default: none)")
    p.add_argument("--headless", action="store_true",
                   help="stream guest text to stdout and print the final screen (default without a terminal)")
    debug_options.add_arguments(p)
    add_display_options(p)
    p.set_defaults(func=handler)
