"""Shared fixtures: real NBD servers on loopback, the shared FreeDOS image."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.images import FREEDOS_IMG
from support.servers import Server, require_tool, start_nbdkit

# pytester for the plugin's own tests; the plugin itself also loads through its pytest11 entry point once the
# package is installed (the entry point's name is the module's, so this does not register it twice).
pytest_plugins = ["pytester", "nbdboot.pytest_plugin"]


@pytest.fixture
def nbdkit(tmp_path):
    """Factory: nbdkit(*args, unix=False, port=None) starts `nbdkit -f --exit-with-parent ...`."""
    require_tool("nbdkit")
    servers: list[Server] = []

    def start(*args: str, unix: bool = False, port: int | None = None, extra_env=None) -> Server:
        sock = str(tmp_path / f"nbdkit{len(servers)}.sock") if unix else None
        server = start_nbdkit(args, socket_path=sock, port=port, extra_env=extra_env)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def freedos_img() -> Path:
    if not FREEDOS_IMG.exists():
        pytest.fail(f"{FREEDOS_IMG} is missing: the shared image must sit beside the project")
    return FREEDOS_IMG
