"""Python API: boot a disk in the emulated PC, type keys, wait for text, read the screen.

    import nbdboot

    with nbdboot.boot(image="freedos.img") as pc:
        pc.wait_for("A:\\\\>", timeout=60)
        pc.type("ver\\n")
        pc.wait_for(re.compile(r"FreeDOS kernel (\\S+)"))
        print(pc.screen)

`boot()` takes the options of `nbdboot run` as keyword arguments and returns a `Boot`:
the machine is powered on but runs only while a thread drives it (`wait_for`, `run`).
That thread is the one that called; `stop()`, `type()`, `screen` and `transcript` are
safe from any other thread. `nbdboot run` is this API plus argument parsing and a console.

Matching follows `--expect`: a text is found when the guest prints it through the BIOS
teletype after the previous match, or when it is on screen more times than it was at
the previous match; so `wait_for("A:\\\\>")` after `type("ver\\n")` waits for the next prompt.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable, NamedTuple, overload

from nbdboot import interrupt
from nbdboot.console.keys import parse_keys
from nbdboot.console.screen import screen_lines
from nbdboot.errors import EXIT_EXPECT_FAILED, EXIT_INTERRUPTED, LocalIOError, NbdbootError, UsageError
from nbdboot.machine.machine import DEFAULT_MEMORY_MB, Machine
from nbdboot.pc import PC
from nbdboot.session import SCREEN_CHECK_INTERVAL, Session
from nbdboot.nbd.uri import looks_like_uri

__all__ = ["boot", "Boot", "BootOptions", "WaitTimeout", "BootStopped", "DiskSpec", "parse_disk", "number_disks"]

# iPXE's budget: 15 s of silence per command, 10 reopen tries (retries), but 1 s apart (retry_delay) rather
# than 5 s, so a server restart is ridden out and a server gone for good reaches the guest as 04h within ~10 s.
CONNECT_OPTIONS: dict[str, Any] = dict(connect_timeout=10.0, timeout=15.0, retries=10, retry_delay=1.0)
MAX_MEMORY_MB = 3072


class WaitTimeout(NbdbootError):
    """`wait_for` gave up: the text was not seen in time (the CLI's exit 1)."""

    exit_code = EXIT_EXPECT_FAILED

    def __init__(self, pattern: str | re.Pattern[str], seconds: float, screen: str):
        self.pattern = pattern
        self.seconds = seconds
        self.screen = screen
        shown = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        kind = "regex" if isinstance(pattern, re.Pattern) else "text"
        super().__init__(f"timeout after {seconds:.3g}s waiting for {kind} '{shown}'")


class BootStopped(NbdbootError):
    """The boot was stopped (`stop()` from another thread) while a thread waited on it."""

    exit_code = EXIT_INTERRUPTED


class DiskSpec(NamedTuple):
    """One disk the PC has of its own: a file or NBD export, and the BIOS drive asked for (None: the next free
    hard disk)."""
    source: str
    number: int | None


_DRIVE_SUFFIX = re.compile(r"^(0[xX][0-9a-fA-F]+|[0-9]+)$")
_HOSTPORT = re.compile(r"^(\[[^\]]+\]|[^:/\[\]@]+):[0-9]+$")
DISK_NUMBERS = "0x00-0x03 for floppies, 0x80-0xFE for hard disks"


def parse_disk(text: str) -> DiskSpec:
    """`FILE_OR_URI[@DRIVE]`. An '@' followed by no number belongs to a URI (nbd://user@host/)."""
    source, at, suffix = text.rpartition("@")
    if not at:
        return DiskSpec(text, None)
    if not _DRIVE_SUFFIX.match(suffix):
        if looks_like_uri(text):
            return DiskSpec(text, None)
        raise UsageError(f"not a drive number after '@' in {text!r} ({DISK_NUMBERS})")
    number = int(suffix, 0)
    if not (0 <= number <= 3 or 0x80 <= number <= 0xFE):
        raise UsageError(f"no BIOS disk can be {suffix} in {text!r} ({DISK_NUMBERS})")
    if not source:
        raise UsageError(f"no file or URI before '@' in {text!r}")
    return DiskSpec(source, number)


def number_disks(specs: Iterable[DiskSpec]) -> list[tuple[int, str]]:
    """(BIOS drive, source) per disk: explicit numbers as given, the rest 80h, 81h... in order, skipping
    numbers already taken, as a PC's BIOS numbers the disks it finds."""
    specs = list(specs)
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


@dataclasses.dataclass
class BootOptions:
    """What to boot and how: the options of `nbdboot run`, under the same names."""

    uri: str | None = None              # nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH, HOST:PORT
    server: str | None = None           # HOST:PORT, with `export`
    export: str | None = None
    image: str | None = None            # a local file, served by the embedded NBD server on loopback
    overlay: str | None = None
    deploy_to: str | None = None
    restore_from: str | None = None
    to: str | None = None
    since_bitmap: str | None = None
    map_path: str | None = None
    sync: str = "each"
    connections: int = 4
    drive: int | str | None = None      # BIOS number of the export, "auto" or None (auto unless media says)
    disks: list = dataclasses.field(default_factory=list)   # DiskSpec or "FILE_OR_URI[@DRIVE]"
    media: str = "auto"                 # auto, hdd, floppy, cd
    retries: int = CONNECT_OPTIONS["retries"]
    retry_delay: float = CONNECT_OPTIONS["retry_delay"]
    memory: int = DEFAULT_MEMORY_MB     # MiB of extended memory
    keys: str | None = None             # typed once the guest first waits for a key (the --keys language)
    no_reboot: bool = False             # a guest reset ends the boot (GuestReset, or GuestCrash for a triple fault)
    serial: list = dataclasses.field(default_factory=list)  # where COM1 (and COM2) go: "stdio", "file:F", ...
    expect_on: str = "any"              # where wait_for looks: "screen", "serial" (COM1's output) or "any"
    vnc: str | None = None              # ":N": a VNC live view on 127.0.0.1:5900+N

    def check(self) -> None:
        """Every combination error as a UsageError, before anything is opened."""
        sources = [bool(self.uri), bool(self.server), bool(self.image), bool(self.restore_from)]
        if sum(sources) != 1:
            raise UsageError("give exactly one of URI, --server HOST:PORT, --image FILE or --restore-from URI")
        if self.export is not None and not self.server:
            raise UsageError("--export goes with --server")
        if bool(self.restore_from) != bool(self.to):
            raise UsageError("--restore-from URI and --to TARGET go together")
        if self.overlay and (self.deploy_to or self.to):
            raise UsageError("--overlay cannot be combined with --deploy-to or --restore-from")
        if self.deploy_to and self.to:
            raise UsageError("--deploy-to and --restore-from cannot be combined")
        if self.since_bitmap and not self.restore_from:
            raise UsageError("--since-bitmap goes with --restore-from")
        if (self.map_path or self.sync != "each") and not (self.overlay or self.deploy_to or self.to):
            raise UsageError("--map and --sync go with --overlay, --deploy-to or --restore-from")
        if self.sync not in ("each", "periodic"):
            raise UsageError(f"--sync must be each or periodic, not {self.sync!r}")
        if not 1 <= self.connections <= 64:
            raise UsageError("--connections must be between 1 and 64")
        if not 1 <= self.memory <= MAX_MEMORY_MB:
            raise UsageError(f"--memory must be between 1 and {MAX_MEMORY_MB} MiB")
        # nan compares false with everything, so each bound is written to fail for it
        if not 0 <= self.retries <= 1000:
            raise UsageError(f"--retries must be between 0 and 1000, not {self.retries}")
        if not 0 <= self.retry_delay <= 3600:
            raise UsageError(f"--retry-delay must be between 0 and 3600 seconds, not {self.retry_delay}")
        if self.expect_on not in ("any", "screen", "serial"):
            raise UsageError(f"--expect-on must be any, screen or serial, not {self.expect_on!r}")
        if self.media not in ("auto", "hdd", "floppy", "cd"):
            raise UsageError(f"--media must be auto, hdd, floppy or cd, not {self.media!r}")
        drive = self.drive
        if isinstance(drive, int) and (not 0 <= drive <= 0xFF or drive in (0x7F, 0xFF)):
            raise UsageError(f"BIOS drive number out of range: {drive:#x}")
        if isinstance(drive, str) and drive != "auto":
            raise UsageError(f"not a drive number: {drive!r} (0x80, 0x00 or auto)")
        if isinstance(drive, int):
            if self.media == "floppy" and drive >= 0x80:
                raise UsageError(f"--media floppy needs a floppy drive number below 0x80, not {drive:#04x}")
            if self.media in ("hdd", "cd") and drive < 0x80:
                raise UsageError(f"--media {self.media} needs a drive number from 0x80, not {drive:#04x}")

    def disk_specs(self) -> list[DiskSpec]:
        return [d if isinstance(d, DiskSpec) else parse_disk(d) for d in self.disks]


def _source(opts: BootOptions):
    """(source_factory, source URI, embedded server, its file) for the chosen export.

    The factory opens a new connection each call: the guest's disk takes one and a
    deploy/restore copier takes its own.
    """
    from nbdboot.disk.nbd import NbdDevice
    from nbdboot.nbd.uri import parse_uri

    server = local = None
    uri: Any
    if opts.image:
        from nbdboot.disk.file import FileDevice
        from nbdboot.nbd.server import NbdServer
        if os.path.isdir(opts.image):
            raise LocalIOError(f"--image {opts.image} is a directory, not a disk image")
        if not os.path.isfile(opts.image):
            raise LocalIOError(f"no such image file: {opts.image}")
        _refuse_image_as_disk(opts.image, opts.disk_specs())
        # With an overlay or a deploy target the guest never writes the image itself.
        writable = os.access(opts.image, os.W_OK) and not (opts.overlay or opts.deploy_to)
        local = FileDevice(opts.image, read_only=not writable)
        server = NbdServer(local, host="127.0.0.1", port=0)
        try:
            server.start()
        except BaseException:
            server.stop()
            local.close()
            raise
        uri = server.uri
    elif opts.server:
        parsed = parse_uri(opts.server)
        if opts.export is not None:
            parsed = parsed.with_export(opts.export)
        uri = parsed
    else:
        uri = parse_uri(opts.restore_from or opts.uri or "")

    options = dict(CONNECT_OPTIONS, retries=opts.retries, retry_delay=opts.retry_delay)

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


def _open_disk(opts: BootOptions, factory, source_uri):
    """The disk the guest boots: the export alone, under an overlay, or while deploying/restoring."""
    from nbdboot.disk.open import open_guest_disk
    return open_guest_disk(factory, overlay=opts.overlay, deploy_to=opts.deploy_to or opts.to,
                           map_path=opts.map_path, sync=opts.sync, connections=opts.connections,
                           since_bitmap=opts.since_bitmap, source_spec=source_uri)


def _drive_number(drive, media: str, device) -> int:
    """The BIOS drive the export becomes: numbers below 80h are floppies (as in iPXE). Unless told, a
    floppy-sized FAT image without a partition table is a floppy (00h), anything else a hard disk (80h)."""
    from nbdboot.bios.int13 import looks_like_floppy
    if drive is None or drive == "auto":
        if media == "floppy":
            return 0x00
        return 0x00 if media == "auto" and looks_like_floppy(device) else 0x80
    return drive


class _QuietConsole:
    """No screen and no keyboard of its own: what an embedding program gets unless it passes a console."""

    def attach(self, machine) -> None:
        pass

    def update(self, machine) -> None:
        pass

    def keys(self) -> list:
        return []

    def finish(self, machine) -> None:
        pass

    def close(self) -> None:
        pass


class _Stop(Exception):
    """Ends a Session run from inside its loop (stop() was called)."""


class _Found(Exception):
    def __init__(self, match: Any):
        self.match = match


class _Driver:
    """The console the Session sees: forwards to the real one, hands over keys typed through the API,
    ends the run when stop() was called, and checks the pattern being waited for after each slice."""

    def __init__(self, boot: "Boot", inner):
        self.boot = boot
        self.inner = inner
        self.check: Callable[[], Any] | None = None
        self.next_check = 0.0

    def keys(self):
        boot = self.boot
        if boot._stop_requested.is_set():
            raise _Stop
        if boot._typed:
            items, now = [], False
            while boot._typed:
                more, at_once = boot._typed.popleft()
                items.extend(more)
                now = now or at_once
            boot.machine.bios.keyboard.type_keys(items, start_now=now)
        return self.inner.keys()

    def update(self, machine) -> None:
        self.inner.update(machine)
        if self.check is None:
            return
        now = time.monotonic()
        # As Session does: a guest waiting for a key or idle has likely just said what it wanted to;
        # one that turned the PC off has said all it will.
        if now >= self.next_check or machine.waiting_in_bios or machine.idle_since is not None \
                or machine.powered_off is not None:
            self.next_check = now + SCREEN_CHECK_INTERVAL
            found = self.check()
            if found is not None:
                raise _Found(found)


class Boot:
    """A booted PC. Make one with `boot()`; use it as a context manager or call `close()`."""

    def __init__(self, options: BootOptions, console=None, machine_options: dict | None = None):
        """machine_options: extra keyword arguments for Machine (debug_out=..., and whatever the debugging
        options add): the place for settings of the PC rather than of what it boots."""
        options.check()
        self.options = options
        self.disk = None                        # the guest's disk (overlay/deploy store or the NBD device)
        self.drive: int | None = None           # the export's BIOS drive number
        self.uri: str = ""                      # where the export comes from
        self.error: BaseException | None = None  # what ended the boot (a GuestCrash, an NbdError, ...)
        self.started = time.monotonic()
        # time.monotonic() after which every wait_for/run gives up (the pytest plugin's timeout marker)
        self.deadline: float | None = None
        self._console = console if console is not None else _QuietConsole()
        self._typed: deque[tuple[list, bool]] = deque()
        self._stop_requested = threading.Event()
        self._drive_lock = threading.Lock()
        self._screen_lock = threading.Lock()
        self._screen_snapshot: list[str] | None = None
        self._closed = False
        self._mark = 0                          # transcript position after the last match
        self._serial_mark = 0                   # COM1 output position after the last match
        self.display = None
        self._baseline: str | None = None       # screen text at the last match
        self._server: Any = None
        self._local: Any = None
        self._opened: list = []
        keys = parse_keys(options.keys) if options.keys else []
        local_disks = number_disks(options.disk_specs())
        from nbdboot.console.display import Display
        display = Display(options)  # checks --serial/--vnc before anything is opened
        factory, self.uri, self._server, self._local = _source(options)
        try:
            self.machine: Machine = PC(memory_mb=options.memory, **(machine_options or {}))
            machine = self.machine
            machine.no_reboot = options.no_reboot
            self.display = display
            display.attach(machine)
            attach_local_disks(machine, local_disks, self._opened)
            self.disk = _open_disk(options, factory, self.uri)
            drive = _drive_number(options.drive, options.media, self.disk)
            media = "auto" if options.media in ("auto", "floppy") else options.media
            # int 13h reads a sector at a time: over NBD each is a round trip, so the drive reads ahead.
            from nbdboot.disk.readahead import ReadAhead
            self.drive = machine.bios.disk.add_drive(drive, ReadAhead(self.disk), media=media).number
            machine.bios.keyboard.type_keys(keys)
            self._console.attach(machine)
            self._driver = _Driver(self, display.wrap(self._console))
            self._session = Session(machine, self._driver)
            machine.power_on(self.drive)
        except BaseException:
            self._release()
            raise

    # -- what the guest shows --------------------------------------------------------------
    @property
    def screen(self) -> str:
        """The 80x25 text screen, rows joined by newlines, trailing blanks stripped."""
        return "\n".join(self.screen_lines).rstrip("\n") + "\n"

    @property
    def screen_lines(self) -> list[str]:
        """The screen's 25 rows. While another thread drives the guest: as of its last check (at most
        SCREEN_CHECK_INTERVAL old while it waits for a pattern), never a half-written read."""
        if self._drive_lock.acquire(blocking=False):
            try:
                return screen_lines(self.machine.cpu)
            finally:
                self._drive_lock.release()
        with self._screen_lock:
            if self._screen_snapshot is not None:
                return list(self._screen_snapshot)
        return [""] * 25

    @property
    def transcript(self) -> str:
        """Everything the guest printed through the BIOS teletype (int 10h 0Eh and friends) since power-on."""
        return "".join(list(self._session.transcript))

    @property
    def int13_log(self):
        """The int 13h calls the guest made, when the BIOS keeps a log (machine.bios.disk.log); None until
        it does. Extension point for the int 13h trace: expose it here, not as a new attribute."""
        return getattr(self.machine.bios.disk, "log", None)

    def screenshot(self, path: str | os.PathLike, text: bool = False) -> None:
        """Write the screen to `path` as a PNG, in whatever video mode the guest is (console/render.py);
        text=True: the 80x25 text instead."""
        try:
            if text:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(self.screen)
                return
            from nbdboot.console.render import png, render
            data = png(*render(self.machine))
            with open(path, "wb") as f:
                f.write(data)
        except OSError as e:
            raise LocalIOError(f"cannot write {path}: {e.strerror}") from None

    @property
    def running(self) -> bool:
        return self.error is None and not self._closed

    @property
    def exit_code(self) -> int | None:
        """None while the guest can go on; else the CLI's exit code for how it ended."""
        if self.error is None:
            return 0 if self._closed else None
        code = getattr(self.error, "exit_code", None)
        if code is not None:
            return code   # 0 for a guest that powered the PC off
        return EXIT_INTERRUPTED if isinstance(self.error, KeyboardInterrupt) else 1

    @property
    def outcome(self) -> str:
        """'running', 'closed', or how the boot ended: 'crashed', 'boot-failed', 'nbd-error',
        'stopped', 'interrupted', 'io-error', 'powered-off', 'reset' (with no_reboot), 'error'."""
        from nbdboot.errors import EXIT_BOOT_FAILED, EXIT_GUEST_CRASH, EXIT_GUEST_RESET, EXIT_IO, EXIT_NBD
        from nbdboot.machine.machine import GuestPoweredOff
        if self.error is None:
            return "closed" if self._closed else "running"
        if isinstance(self.error, BootStopped):
            return "stopped"
        if isinstance(self.error, GuestPoweredOff):
            return "powered-off"
        if self.exit_code == EXIT_GUEST_RESET:
            return "reset"
        names = {EXIT_GUEST_CRASH: "crashed", EXIT_BOOT_FAILED: "boot-failed", EXIT_NBD: "nbd-error",
                 EXIT_IO: "io-error", EXIT_INTERRUPTED: "interrupted"}
        return names.get(self.exit_code or 0, "error")

    # -- driving it ----------------------------------------------------------------------
    def type(self, keys: str, now: bool = False) -> None:
        """Queue keystrokes in the --keys language (text, \\n, {enter}, {f1}, {ctrl-c}, {pause:S}...) and
        PS/2 mouse items ({mouse-move:DX,DY}, {mouse-down:left}, {mouse-up:left}, {mouse-click:right}...).
        They flow once the guest has waited for a key (earlier keys would be eaten by boot-time hotkey
        checks), or at once with `now` (a prompt that polls the keyboard for a moment, as iPXE's Ctrl-B),
        and while a thread drives the guest. Safe from any thread."""
        self._typed.append((parse_keys(keys), now))

    @overload
    def wait_for(self, pattern: str, timeout: float | None = ...) -> str: ...

    @overload
    def wait_for(self, pattern: re.Pattern[str], timeout: float | None = ...) -> re.Match[str]: ...

    def wait_for(self, pattern, timeout: float | None = 30.0):
        """Run the guest until `pattern` (a text, or a compiled regex) is seen; return it (the text, or the
        re.Match). Raises WaitTimeout after `timeout` seconds (None: no limit), the guest's failure
        (GuestCrash, BootFailed, an NbdError) if it fails first, BootStopped if stop() is called."""
        if not isinstance(pattern, (str, re.Pattern)) or pattern == "":
            raise UsageError("wait_for takes a non-empty text or a compiled regular expression")
        timeout = self._bounded(timeout)
        found = self._drive(timeout, lambda: self._find(pattern))
        if found is None:
            self._raise_lost_connection()   # the disk died and the guest went on: that is the cause
            raise WaitTimeout(pattern, timeout or 0.0, self.screen)
        return found

    def run(self, seconds: float | None = None) -> None:
        """Let the guest run for `seconds` of wall time (None: until stop(), the guest fails or Ctrl-C)."""
        if seconds is not None and not 0 < seconds < float("inf"):
            raise UsageError("run() takes a positive number of seconds")
        self._drive(self._bounded(seconds), None)
        # it ran its time with its disk's connection gone for good: the guest could not have done its work
        self._raise_lost_connection()

    def stop(self) -> None:
        """End the current and any later wait_for/run with BootStopped. Safe from any thread and from signal
        handlers; the guest stops within one slice (about 20 ms)."""
        self._stop_requested.set()

    def close(self) -> None:
        """Stop the guest and release its disk, connections and embedded server. Idempotent."""
        self.stop()
        with self._drive_lock:
            if self._closed:
                return
            self._closed = True
            self._release()

    def __enter__(self) -> "Boot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<nbdboot.Boot {self.uri} drive={self.drive:#04x} {self.outcome}>"

    # -- inside --------------------------------------------------------------------------
    def _raise_lost_connection(self) -> None:
        """The guest was told 04h when its disk's connection died for good and carried on: a wait that then
        runs out ends with that NBD error (exit 3), the cause, rather than the timeout it led to."""
        lost = self.disk.lost_connection if self.disk is not None else None
        if lost is not None:
            self.error = lost
            raise lost

    def _bounded(self, timeout: float | None) -> float | None:
        if self.deadline is None:
            return timeout
        left = max(self.deadline - time.monotonic(), 1e-3)
        return left if timeout is None else min(timeout, left)

    def _drive(self, timeout: float | None, check):
        if timeout is not None and timeout <= 0:
            raise UsageError("timeout must be positive")
        if self._closed:
            raise UsageError("this boot is closed")
        if not self._drive_lock.acquire(blocking=False):
            raise UsageError("another thread is driving this boot (one wait_for/run at a time)")
        try:
            if self.error is not None:
                raise self.error
            if check is not None:
                found = check()   # already there since the last match
                if found is not None:
                    return found
            self._driver.check = check and self._checked(check)
            self._session.timeout = timeout
            armed = self._arm_deadline(timeout)
            try:
                self._session.run()
            except _Found as f:
                return f.match
            except _Stop:
                self.error = BootStopped("stopped")
                raise self.error from None
            except Exception as e:
                self.error = e
                # A guest that prints its text and then halts, crashes or gives up (int 18h) did print it: the
                # wait is met, and the failure ends the next one.
                found = self._checked(check)() if check is not None else None
                if found is None:
                    raise
                return found
            except BaseException as e:
                self.error = e
                raise
            finally:
                if armed:
                    interrupt.set_deadline(None)
                self._driver.check = None
                self._snapshot()
            return None
        finally:
            self._drive_lock.release()

    @staticmethod
    def _arm_deadline(timeout: float | None) -> bool:
        """Bound the NBD waits inside the guest's int 13h calls by this wait's timeout too (a silent server
        would otherwise hold the guest for the NBD client's own timeouts and retries). The deadline is the
        process's, for its main thread: a run that armed one already (`nbdboot run --timeout`) keeps it."""
        if timeout is None or threading.current_thread() is not threading.main_thread() \
                or interrupt.remaining(math.inf) != math.inf:
            return False
        interrupt.set_deadline(time.monotonic() + timeout, f"the wait's timeout ({timeout:.3g} s)")
        return True

    def _checked(self, check):
        def run_check():
            self._snapshot()
            return check()
        return run_check

    def _snapshot(self) -> None:
        lines = screen_lines(self.machine.cpu)
        with self._screen_lock:
            self._screen_snapshot = lines

    def _screen_now(self) -> str:
        """The screen as of the last snapshot (taken just before each check), else read now."""
        with self._screen_lock:
            lines = self._screen_snapshot
        if lines is None or not self._drive_lock.locked():
            lines = screen_lines(self.machine.cpu)
        return "\n".join(lines).rstrip("\n") + "\n"

    def _find(self, pattern):
        """The rule of --expect, with the position of the last match kept across calls: in the teletype
        transcript, in COM1's output, or new on the screen (as options.expect_on allows)."""
        look_screen = self.options.expect_on in ("screen", "any")
        look_serial = self.options.expect_on in ("serial", "any")
        text = self._screen_now() if look_screen else ""
        output = "".join(self._session.transcript) if look_screen else ""
        serial = bytes(self.machine.serial[0].output).decode("latin-1").replace("\r", "") if look_serial else ""
        baseline = self._baseline
        if isinstance(pattern, str):
            at = output.find(pattern, self._mark)
            serial_at = serial.find(pattern, self._serial_mark)
            if at >= 0:
                self._mark, self._serial_mark = at + len(pattern), len(serial)
            elif serial_at >= 0:
                self._mark, self._serial_mark = len(output), serial_at + len(pattern)
            elif pattern in text and (baseline is None or text.count(pattern) > baseline.count(pattern)):
                self._mark, self._serial_mark = len(output), len(serial)
            else:
                return None
            found: Any = pattern
        else:
            found = pattern.search(output, self._mark)
            serial_found = pattern.search(serial, self._serial_mark)
            if found is not None:
                self._mark, self._serial_mark = found.end(), len(serial)
            elif serial_found is not None:
                found = serial_found
                self._mark, self._serial_mark = len(output), found.end()
            else:
                on_screen = list(pattern.finditer(text))
                if not on_screen or (baseline is not None and len(on_screen) <= len(pattern.findall(baseline))):
                    return None
                found = on_screen[-1]
                self._mark, self._serial_mark = len(output), len(serial)
        self._baseline = text
        return found

    def _release(self) -> None:
        console, self._console = self._console, None
        try:
            if console is not None:
                console.close()
        finally:
            if self.disk is not None:
                self.disk.close()
            if self._server is not None:
                self._server.stop()
            if self._local is not None:
                self._local.close()
            for disk in self._opened:
                disk.close()
            if self.display is not None:
                self.display.close()


def boot(uri: str | None = None, *, console=None, machine_options: dict | None = None, **options: Any) -> Boot:
    """Boot `uri` (or image=FILE, server="HOST:PORT", restore_from=URI with to=TARGET) and return the
    powered-on `Boot`. Keyword options are BootOptions' fields, the long options of `nbdboot run`:
    drive=0x00|0x80|"auto", media="auto"|"hdd"|"floppy"|"cd", disks=["c.img@0x80"], memory=64 (MiB),
    keys="...", no_reboot=True, overlay=, deploy_to=, retries=, retry_delay=... A console (the CLI's terminal or text
    stream) is optional."""
    fields = {f.name for f in dataclasses.fields(BootOptions)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"boot() got unknown option(s): {', '.join(unknown)}")
    return Boot(BootOptions(uri=uri, **options), console=console, machine_options=machine_options)
