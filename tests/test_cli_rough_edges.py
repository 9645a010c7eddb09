"""What a new user meets on the command line: nbdinfo's shapes for ls/info, `-` and --connections in copy,
size and time suffixes, help that shows every default and every key."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from nbdboot.cli import build_parser
from nbdboot.console.keys import NAMED_KEYS, keys_help, parse_keys
from nbdboot.units import seconds, size_bytes, size_mib
from support.servers import require_tool

MiB = 1 << 20


def nbdboot(*args, check=True, **kw):
    r = subprocess.run([sys.executable, "-m", "nbdboot", *args], capture_output=True, timeout=120, **kw)
    if check and r.returncode:
        raise AssertionError(f"nbdboot {' '.join(args)} -> {r.returncode}\n{r.stderr.decode()}")
    return r


def nbdinfo(*args) -> bytes:
    require_tool("nbdinfo")
    return subprocess.run(["nbdinfo", *args], check=True, capture_output=True, timeout=60).stdout


@pytest.fixture
def embedded(tmp_path):
    """`nbdboot serve` of one file (the default export "", with the file name as its description)."""
    from support.servers import free_port, wait_for_port
    img = tmp_path / "disk.img"
    img.write_bytes(b"\x11" * MiB + bytes(MiB))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nbdboot", "serve", str(img), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"nbd://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


def test_ls_is_nbdinfo_list_for_the_embedded_server(embedded):
    ours = nbdboot("ls", embedded).stdout
    assert ours == nbdinfo("--list", embedded)
    assert b'export="":\n\tdescription: disk.img\n' in ours      # the default export under its own name
    assert json.loads(nbdboot("ls", "--json", embedded).stdout) == json.loads(nbdinfo("--list", "--json", embedded))


def test_ls_and_info_are_nbdinfo_for_nbdkit(nbdkit):
    server = nbdkit("memory", "3M")     # sends no block sizes: none shown
    assert nbdboot("ls", server.uri).stdout == nbdinfo("--list", server.uri)
    assert json.loads(nbdboot("ls", "--json", server.uri).stdout) == json.loads(nbdinfo("--list", "--json", server.uri))
    ours = json.loads(nbdboot("info", "--json", server.uri + "/").stdout)
    theirs = json.loads(nbdinfo("--json", server.uri + "/"))
    for export in theirs["exports"]:
        export.pop("content", None)     # nbdinfo's guess from file(1) magic
    assert ours == theirs
    text = nbdboot("info", server.uri).stdout.decode()
    assert text.startswith("protocol: newstyle-fixed without TLS, using structured packets\nexport=\"\":\n")
    assert "\texport-size: 3145728 (3M)\n" in text


def test_copy_dash_is_stdout_and_stdin(nbdkit, tmp_path):
    require_tool("nbdcopy")
    src = nbdkit("pattern", "8M")
    out = nbdboot("copy", src.uri, "-").stdout
    reference = subprocess.run(["nbdcopy", src.uri, "-"], check=True, capture_output=True).stdout
    assert len(out) == 8 * MiB and out == reference
    assert not (tmp_path / "-").exists()
    dst = nbdkit("memory", "8M")
    nbdboot("copy", "-", dst.uri, input=reference)                       # a pipe, read to its end
    assert subprocess.run(["nbdcopy", dst.uri, "-"], check=True, capture_output=True).stdout == reference
    image = tmp_path / "from-stdin.img"
    with open(tmp_path / "ref.img", "wb") as f:
        f.write(reference)
    with open(tmp_path / "ref.img", "rb") as f:                          # a redirected file
        nbdboot("copy", "-", str(image), stdin=f)
    assert image.read_bytes() == reference
    assert nbdboot("copy", "-", "-", input=reference).stdout == reference


def test_copy_connections_uses_that_many_when_multi_conn(nbdkit, tmp_path):
    log = tmp_path / "multi.log"
    src = nbdkit("--filter=log", "pattern", "16M", f"logfile={log}")
    nbdboot("copy", "--connections", "4", src.uri, "null:")
    assert log.read_text().count(" Connect export=") == 4
    out = tmp_path / "out.img"
    nbdboot("copy", "-C", "4", src.uri, str(out))
    assert out.read_bytes() == b"".join(i.to_bytes(8, "big") for i in range(0, 16 * MiB, 8))
    # a server without multi-conn gets one connection, as from nbdcopy
    single_log = tmp_path / "single.log"
    single = nbdkit("--filter=log", "--filter=multi-conn", "pattern", "16M", f"logfile={single_log}",
                    "multi-conn-mode=disable")
    nbdboot("copy", "--connections", "4", single.uri, "null:")
    assert single_log.read_text().count(" Connect export=") == 1


@pytest.mark.parametrize("text, expected", [("64", 64), ("64M", 64), ("64MiB", 64), ("1G", 1024), ("2048K", 2)])
def test_memory_sizes(text, expected):
    assert size_mib(text) == expected


@pytest.mark.parametrize("text, expected", [("20", 20.0), ("20s", 20.0), ("500ms", 0.5), ("2m", 120.0),
                                            ("1.5", 1.5), ("1h", 3600.0)])
def test_durations(text, expected):
    assert seconds(text) == expected


@pytest.mark.parametrize("bad", ["64X", "M", "1.5", "-3M"])
def test_bad_sizes_are_rejected(bad):
    with pytest.raises(argparse.ArgumentTypeError):
        size_mib(bad)


def test_size_in_bytes():
    assert size_bytes("64K") == 65536 and size_bytes("4096") == 4096


def test_run_takes_suffixed_memory_and_timeout(tmp_path):
    from pathlib import Path
    demo = Path(__file__).resolve().parent.parent / "bootimages" / "demo.img"
    image = tmp_path / "demo.img"
    image.write_bytes(demo.read_bytes())
    r = nbdboot("run", "--image", str(image), "--memory", "32M", "--timeout", "20s", "--headless",
                "--expect", "demo complete")
    assert f"usable RAM (int 15h E820): {639 + 32 * 1024} KiB".encode() in r.stdout


def _options(parser, prefix=""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prefix} {name}".strip())
        else:
            yield prefix, action


def test_every_default_is_in_the_help():
    missing = []
    for command, action in _options(build_parser()):
        if action.default in (None, False, argparse.SUPPRESS) or isinstance(action, argparse._StoreFalseAction):
            continue
        if "default" not in (action.help or ""):
            missing.append(f"{command} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_help_texts_new_users_asked_for():
    by_option = {(c, o): a for c, a in _options(build_parser()) for o in a.option_strings}
    assert "default 127.0.0.1" in by_option[("serve", "--bind")].help
    for command in ("info", "ls"):
        assert "default 15s" in by_option[(command, "--timeout")].help
    assert "nbdinfo --list --json" in by_option[("ls", "--json")].help


def test_keys_help_lists_every_key_the_parser_knows():
    text = keys_help()
    fkeys = sorted(int(n[1:]) for n in NAMED_KEYS if n[0] == "f" and n[1:].isdigit())
    assert fkeys == list(range(1, 13)) and "{f1}..{f12}" in text
    letters = [f"ctrl-{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    assert sorted(n for n in NAMED_KEYS if n.startswith("ctrl-") and len(n) == 6) == letters
    assert "{ctrl-a}..{ctrl-z}" in text
    for name in NAMED_KEYS:
        if name not in letters and not (name[0] == "f" and name[1:].isdigit()):
            assert "{" + name + "}" in text, name
            parse_keys("{" + name + "}")
    for escape in ("\\n", "\\r", "\\t", "\\e", "\\b", "\\\\"):
        assert escape in text
        parse_keys(escape)
    run_help = nbdboot("run", "--help").stdout.decode()
    assert "{pgdn}" in run_help and "{ctrl-a}..{ctrl-z}" in run_help


def test_stdout_device_writes_out_of_order_blocks_in_order(tmp_path):
    from nbdboot.errors import LocalIOError
    from nbdboot.disk.stdio import StdoutDevice
    path = tmp_path / "out"
    with open(path, "wb") as f:
        dev = StdoutDevice(10, fd=f.fileno())
        dev.pwrite(b"cd", 2)        # ahead of the write position: held
        dev.zero(7, 3)
        dev.pwrite(b"ab", 0)        # releases ab, cd
        dev.pwrite(b"efg", 4)       # releases efg and the zero run
        dev.close()
    assert path.read_bytes() == b"abcdefg\0\0\0"
    with open(path, "wb") as f:
        short = StdoutDevice(10, fd=f.fileno())
        short.pwrite(b"x", 1)
        with pytest.raises(LocalIOError):
            short.close()             # a gap is an error, not a short file
