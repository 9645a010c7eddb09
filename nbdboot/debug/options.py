"""`nbdboot run`'s debugging options, and attaching what they ask for to a machine.

Nothing here is imported or attached unless an option is given: a plain run
pays for none of it (docs/debugging.md).
"""

from __future__ import annotations

import argparse
import sys

from nbdboot.errors import LocalIOError, UsageError


def parse_address(text: str) -> int:
    """A linear address (hex, 0x optional) or SEG:OFF (hex)."""
    try:
        if ":" in text:
            seg, off = text.split(":")
            seg_value, off_value = int(seg, 16), int(off, 16)
            if not (0 <= seg_value <= 0xFFFF and 0 <= off_value <= 0xFFFF):
                raise ValueError
            return (seg_value << 4) + off_value
        value = int(text, 16)
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address: {text!r} (hex linear, e.g. 7c00, or SEG:OFF, "
                                         f"e.g. 07c0:0000)") from None


def parse_breaks(text: str) -> list[int]:
    return [parse_address(part) for part in text.split(",") if part]


def parse_log(text: str) -> tuple[str, str | None]:
    what, _, path = text.partition(",")
    if what not in ("int13", "bios"):
        raise argparse.ArgumentTypeError(f"--log takes int13 or bios (then ,FILE), not {what!r}")
    return what, path or None


def parse_trace(text: str) -> tuple[str, tuple[int, int] | None]:
    what, _, span = text.partition(":")
    if what == "int" and not span:
        return what, None
    if what != "exec":
        raise argparse.ArgumentTypeError(f"--trace takes exec[:START-END] or int, not {text!r}")
    if not span:
        return what, None
    from nbdboot.debug.trace import parse_range
    try:
        return what, parse_range(span)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(parser) -> None:
    group = parser.add_argument_group("debugging (docs/debugging.md)")
    group.add_argument("--gdb", metavar="[HOST:]PORT",
                       help="serve the gdb remote protocol (loopback unless HOST is given; port 0 picks one): "
                            "real mode works with a stock gdb, $pc is linear CS*16+IP")
    group.add_argument("--gdb-wait", action="store_true",
                       help="with --gdb: stop before the boot sector's first instruction until gdb attaches")
    group.add_argument("--log", dest="logs", action="append", type=parse_log, metavar="int13|bios[,FILE]",
                       help="log every int 13h call, naming the file its sectors belong to (int13), or every "
                            "BIOS call served (bios); to stderr or FILE (repeatable)")
    group.add_argument("--trace", dest="traces", action="append", type=parse_trace,
                       metavar="exec[:START-END]|int",
                       help="trace each instruction executed in a linear range (hex, END inclusive) with the "
                            "registers it changed, or every interrupt taken (repeatable); slow, off by default")
    group.add_argument("--trace-out", metavar="FILE", help="write traces to FILE (default stderr)")
    group.add_argument("--debugcon", metavar="FILE|stdout", help="what the guest writes to port E9h")
    group.add_argument("--break", dest="breaks", action="append", type=parse_breaks, metavar="ADDR[,ADDR...]",
                       help="stop the run with a report (registers, code, stack, last disk reads) and exit 7 "
                            "when the CPU reaches ADDR (hex linear or SEG:OFF)")


def wanted(args) -> bool:
    return bool(args.gdb or args.gdb_wait or args.logs or args.traces or args.trace_out or args.debugcon
                or args.breaks)


class Debugging:
    """What the options attached to one machine; close() detaches and flushes it all."""

    def __init__(self):
        self.debugger = None
        self.stub = None
        self.disklog = None
        self.parts: list = []      # traces and logs, closed in reverse
        self.files: list = []

    def bind(self, session, deadline: float | None) -> None:
        """The Session whose timeout excludes the time gdb holds the guest stopped; the run's deadline
        (time.monotonic()), which also ends a wait for gdb to attach."""
        if self.debugger is not None:
            self.debugger.session = session
            self.debugger.deadline = deadline

    @property
    def paused(self) -> float:
        return 0.0 if self.debugger is None else self.debugger.paused

    def close(self, exit_status: int | None = None) -> None:
        if self.stub is not None:
            self.stub.close(exit_status)
        for part in reversed(self.parts):
            part.close()
        for f in self.files:
            try:
                f.close()
            except OSError:
                pass


def _open(path: str | None, what: str, binary: bool = False):
    if path is None:
        return None
    try:
        return open(path, "wb" if binary else "w", encoding=None if binary else "utf-8",
                    **({} if binary else {"buffering": 1 << 16}))
    except OSError as e:
        raise LocalIOError(f"cannot write {what} to {path}: {e.strerror}") from None


def attach(machine, args) -> Debugging | None:
    if not wanted(args):
        return None
    if args.gdb_wait and not args.gdb:
        raise UsageError("--gdb-wait goes with --gdb [HOST:]PORT")
    if args.trace_out and not args.traces:
        raise UsageError("--trace-out goes with --trace")
    debugging = Debugging()
    try:
        _attach(machine, args, debugging)
    except BaseException:
        debugging.close()
        raise
    return debugging


def _attach(machine, args, debugging: Debugging) -> None:
    if args.debugcon:
        machine.debugcon.out = _debugcon_writer(args.debugcon, debugging)

    logs = dict(args.logs or [])
    if "int13" in logs or args.gdb or args.breaks:
        from nbdboot.debug.disklog import DiskLog
        out = None
        if "int13" in logs:
            out = _open(logs["int13"], "the int 13h log") or sys.stderr
            if out is not sys.stderr:
                debugging.files.append(out)
        debugging.disklog = DiskLog(machine, out)
        debugging.parts.append(debugging.disklog)
    if "bios" in logs:
        from nbdboot.debug.trace import BiosLog
        out = _open(logs["bios"], "the BIOS log") or sys.stderr
        if out is not sys.stderr:
            debugging.files.append(out)
        debugging.parts.append(BiosLog(machine, out))

    if args.traces:
        from nbdboot.debug.trace import ExecTrace, InterruptTrace
        out = _open(args.trace_out, "the trace") or sys.stderr
        if out is not sys.stderr:
            debugging.files.append(out)
        for what, span in args.traces:
            if what == "exec":
                start, end = span or (0, 0xFFFFFFFF)
                debugging.parts.append(ExecTrace(machine, out, start, end))
            else:
                debugging.parts.append(InterruptTrace(machine, out))

    if args.gdb or args.breaks:
        from nbdboot.debug.control import Debugger
        debugging.debugger = Debugger(machine)
    if args.breaks:
        from nbdboot.debug.breaks import BreakOnAddresses
        addresses = [a for group in args.breaks for a in group]
        debugging.parts.append(BreakOnAddresses(debugging.debugger, addresses, debugging.disklog))
    if args.gdb:
        from nbdboot.debug.gdbstub import GdbStub, parse_address as parse_listen
        try:
            listen = parse_listen(args.gdb)
        except ValueError as e:
            raise UsageError(str(e)) from None
        try:
            debugging.stub = GdbStub(debugging.debugger, listen, args.gdb_wait, debugging.disklog)
        except OSError as e:
            raise LocalIOError(str(e)) from None


def _debugcon_writer(target: str, debugging: Debugging):
    if target == "stdout":
        stream = sys.stdout

        def write(data: bytes) -> None:
            stream.write(data.decode("latin-1"))
            if data == b"\n":
                stream.flush()
        debugging.parts.append(_Flush(stream))
        return write
    f = _open(target, "the debug console", binary=True)
    debugging.files.append(f)

    def write_file(data: bytes) -> None:
        f.write(data)
        if data == b"\n":
            f.flush()
    return write_file


class _Flush:
    def __init__(self, stream):
        self.stream = stream

    def close(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass
