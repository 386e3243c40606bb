"""state.sockaddr: Unix sockets bound and reached under directories past the AF_UNIX limit."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from berth.state.sockaddr import SUN_PATH_MAX, address


def _deep(tmp_path: Path) -> Path:
    d = tmp_path / ("d" * 100) / ("e" * 100)
    d.mkdir(parents=True)
    return d


def test_a_short_path_is_given_as_is(tmp_path: Path):
    with address(tmp_path / "a.sock") as name:
        assert name == str(tmp_path / "a.sock")


def test_bind_and_connect_past_the_limit(tmp_path: Path):
    path = _deep(tmp_path) / ("f" * 64 + ".sock")
    assert len(str(path)) > SUN_PATH_MAX
    with pytest.raises(OSError, match="too long"):
        socket.socket(socket.AF_UNIX).bind(str(path))
    server = socket.socket(socket.AF_UNIX)
    with address(path) as name:
        assert name.startswith("/proc/self/fd/")
        server.bind(name)
    server.listen()
    assert path.is_socket()  # the socket file is where the long path says
    client = socket.socket(socket.AF_UNIX)
    with address(path) as name:
        client.connect(name)
    conn, _ = server.accept()
    client.sendall(b"ping")
    assert conn.recv(4) == b"ping"
    for s in (conn, client, server):
        s.close()


def test_a_name_too_long_by_itself_is_refused(tmp_path: Path):
    with pytest.raises(OSError, match="too long"):
        with address(tmp_path / ("n" * 120)):
            pass
