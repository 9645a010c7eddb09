"""Command-line entry point: `nbdboot COMMAND ...`.

Each command lives in nbdboot/commands/<name>.py with `register(subparsers)`,
which adds its parser and sets `func` to a handler returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from nbdboot import __version__
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("nbdboot: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - map our typed errors to one line + exit code
        code = getattr(e, "exit_code", None)
        if code is None:
            raise
        print(f"nbdboot: error: {e}", file=sys.stderr)
        return code


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
