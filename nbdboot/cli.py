"""Command-line entry point: `nbdboot COMMAND ...`.

Each command lives in nbdboot/commands/<name>.py with `register(subparsers)`,
which adds its parser and sets `func` to a handler returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from nbdboot import __version__, interrupt
from nbdboot.errors import EXIT_CODES_HELP, EXIT_INTERRUPTED, EXIT_USAGE

COMMANDS = ["run", "serve", "info", "ls", "copy", "overlay", "deploy", "restore"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and the usage exit code, as argparse does, but ours
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nbdboot",
        description="Boot real x86 boot code from a disk served over NBD.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nbdboot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        if only and name != only:
            continue  # start-up time: import just the command being run
        try:
            module = importlib.import_module(f"nbdboot.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"nbdboot.commands.{name}":
                raise
            continue  # command not built yet
        module.register(sub)
    return parser


class _StdoutThatMayClose:
    """sys.stdout for a command whose reader may go away (`| head -1`, `| true`): once a write fails
    with EPIPE, output goes to /dev/null and the command carries on, so its exit code is the outcome's
    (a boot that failed still exits 5), not the pipe's."""

    def __init__(self, stream):
        self._stream = stream
        self.lost = False

    def _lose(self) -> None:
        self.lost = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def write(self, text):
        if self.lost:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._lose()
            return len(text)

    def flush(self) -> None:
        if self.lost:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._lose()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    interrupt.install()
    if not isinstance(sys.stdout, _StdoutThatMayClose) and sys.stdout is sys.__stdout__:
        sys.stdout = _StdoutThatMayClose(sys.stdout)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except interrupt.Terminated as e:
        _say(f"nbdboot: terminated by {e}")
        return e.exit_code
    except KeyboardInterrupt:
        _say("nbdboot: interrupted")
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - map our typed errors to one line + exit code
        code = getattr(e, "exit_code", None)
        if code is None:
            raise
        _say(f"nbdboot: error: {e}")
        return code


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except OSError:
        pass   # stderr gone too: the exit code still says it


def entry() -> None:
    """The process entry point (console script, `python -m nbdboot`): main(), then exit
    without interpreter teardown. Commands close what they opened before returning;
    the teardown (freeing Unicorn's memory and translation cache, unloading modules)
    would add about 15 ms to every run."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
