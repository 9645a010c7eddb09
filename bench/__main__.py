"""`python3 -m bench [NAME...] [-- ARGS]`: run every bench_*.py, or the named ones."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench


def available() -> list[str]:
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(bench.__path__)
                  if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("available:", " ".join(available()))
        return 0
    names = argv or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"bench: unknown benchmark(s) {' '.join(unknown)}; available: {' '.join(available())}",
              file=sys.stderr)
        return 2
    status = 0
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        status = max(status, int(module.main(extra) or 0))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
