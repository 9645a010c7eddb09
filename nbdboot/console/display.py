"""`nbdboot run`'s screen and serial options: --serial, --expect-on, --screenshot,
--screenshot-on-fail and --vnc, in one place; `Display` opens the serial backends and
the VNC server of a boot (api.Boot makes one from its BootOptions).

Nothing is rendered unless asked: a screenshot renders once at exit, the VNC
server renders when a client asks for a frame.
"""

from __future__ import annotations

from nbdboot.errors import UsageError

_VNC = r"^(?:(127\.0\.0\.1|localhost|\[::1\]|::1))?:([0-9]{1,5})$"  # compiled when used: start-up time


def add_display_options(p) -> None:
    group = p.add_argument_group("screen, serial port and live view")
    group.add_argument("--serial", action="append", metavar="SPEC",
                       help="where COM1 goes (a second --serial: COM2): stdio, FILE, file:FILE, unix:PATH, "
                            "tcp:HOST:PORT (loopback; add ,server=on[,wait=off] to listen), null")
    group.add_argument("--expect-on", choices=("any", "screen", "serial"), default="any",
                       help="where --expect looks: the screen, COM1's output, or either (default)")
    group.add_argument("--screenshot", metavar="FILE.png", help="write the final screen as a PNG (any video mode)")
    group.add_argument("--screenshot-on-fail", metavar="FILE.png",
                       help="write the final screen as a PNG only when the run fails (crash, missed --expect)")
    group.add_argument("--vnc", metavar=":N",
                       help="live view on a VNC server at 127.0.0.1:5900+N (QEMU's -vnc :N); keys and pointer go "
                            "to the guest")


def parse_vnc(text: str) -> tuple[str, int]:
    import re
    m = re.match(_VNC, text)
    if not m:
        raise UsageError(f"--vnc: expected :N or 127.0.0.1:N (a display number, loopback only), not {text!r}")
    host = "::1" if m.group(1) in ("[::1]", "::1") else "127.0.0.1"
    display = int(m.group(2))
    if display > 59635:
        raise UsageError(f"--vnc: display number {display} is too large")
    return host, 5900 + display


class Display:
    """The serial backends and the VNC server of one boot (api.BootOptions' serial and vnc)."""

    def __init__(self, options):
        self.serials = []
        specs = options.serial or []
        if isinstance(specs, str):
            specs = [specs]
        if len(specs) > 2:
            raise UsageError("--serial: the PC has two serial ports (COM1, COM2)")
        if specs:
            from nbdboot.console.serial import SerialBackend
            self.serials = [SerialBackend(spec) for spec in specs]
        if sum(b.kind == "stdio" for b in self.serials) > 1:
            raise UsageError("--serial stdio can be given once")
        self.serial_stdio = any(b.kind == "stdio" for b in self.serials)
        self.vnc_address = parse_vnc(options.vnc) if options.vnc else None
        self.vnc = None

    @staticmethod
    def serial_stdio_in(args) -> bool:
        """Does a --serial take the terminal (then the screen's text goes to stderr, and no live view)?"""
        return any(spec.split(",")[0] == "stdio" for spec in (args.serial or []))

    def attach(self, machine) -> None:
        for backend, uart in zip(self.serials, machine.serial):
            backend.open()
            backend.attach(uart)
        if self.vnc_address:
            from nbdboot.console.vnc import VncServer
            self.vnc = VncServer(machine, *self.vnc_address)
            self.vnc.start()

    def wrap(self, console):
        """The console the session drives, with the VNC view fed between slices when there is one."""
        return console if self.vnc is None else _WithVnc(console, self.vnc)

    def close(self) -> None:
        for backend in self.serials:
            backend.close()
        if self.vnc is not None:
            self.vnc.stop()
            self.vnc = None


class _WithVnc:
    """A console that also gives the VNC server its turn after each slice."""

    def __init__(self, console, vnc):
        self._console = console
        self._vnc = vnc

    def update(self, machine) -> None:
        import time
        self._console.update(machine)
        self._vnc.tick(time.monotonic())

    def __getattr__(self, name):
        return getattr(self._console, name)
