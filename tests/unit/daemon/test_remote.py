"""berthd's -H addresses and TLS flags as dockerd reads them (no sockets are opened here)."""

from __future__ import annotations

import argparse
import socket

import pytest

from berth.daemon.config import load
from berth.daemon.remote import Endpoint, check_plain_tcp, parse_endpoint, select_activated


@pytest.mark.parametrize("host, tls, want", [
    ("unix:///run/b.sock", False, Endpoint("unix", "/run/b.sock")),
    ("/run/b.sock", False, Endpoint("unix", "/run/b.sock")),
    ("tcp://0.0.0.0:2376", True, Endpoint("tcp", "0.0.0.0", 2376)),
    ("tcp://[::1]:2376", True, Endpoint("tcp", "::1", 2376)),
    ("tcp://10.0.0.1", True, Endpoint("tcp", "10.0.0.1", 2376)),   # dockerd's TLS port
    ("tcp://10.0.0.1", False, Endpoint("tcp", "10.0.0.1", 2375)),
    ("tcp://:2376", True, Endpoint("tcp", "127.0.0.1", 2376)),
    ("127.0.0.1:99", False, Endpoint("tcp", "127.0.0.1", 99)),
    ("fd://", False, Endpoint("fd", "")),
    ("fd://3", False, Endpoint("fd", "3")),
])
def test_parse_endpoint(host: str, tls: bool, want: Endpoint) -> None:
    assert parse_endpoint(host, tls) == want


@pytest.mark.parametrize("host", ["npipe:////./pipe/x", "unix://", "tcp://h:port"])
def test_bad_endpoints_stop_berthd(host: str) -> None:
    with pytest.raises(SystemExit, match="invalid bind address"):
        parse_endpoint(host, False)


def _args(*argv: str) -> argparse.Namespace:
    """berthd's own flags (daemon.json's table), with an empty configuration file."""
    return load(["--config-file", "/dev/null", *argv])


def test_tls_flags_keep_dockerd_dests_and_tell_false_from_absent() -> None:
    a = _args("--tlsverify", "--tlscacert", "ca", "--tlscert=c", "--tlskey=k")
    assert (a.tls, a.tlsverify, a.tlscacert, a.tlscert, a.tlskey) == (None, True, "ca", "c", "k")
    assert _args("--tls=false").tls is False
    assert _args().tls is None


def test_plain_tcp_needs_consent(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit, match="without TLS"):
        check_plain_tcp(["tcp://0.0.0.0:2375"], _args())
    check_plain_tcp(["tcp://0.0.0.0:2375"], _args("--tlsverify"))
    assert not caplog.records
    check_plain_tcp(["tcp://0.0.0.0:2375"], _args("--tls=false"))
    assert "without --tlsverify is insecure" in caplog.text and "tcp://0.0.0.0:2375" in caplog.text


def test_select_activated() -> None:
    a, b, c = (socket.socket() for _ in range(3))
    try:
        socks = [("berth.socket", a), ("tls", b), ("tls", c)]
        assert select_activated("", socks) == [a, b, c]
        assert select_activated("4", socks) == [b]
        assert select_activated("tls", socks) == [b, c]
        with pytest.raises(SystemExit, match="too few socket activated files"):
            select_activated("6", socks)
        with pytest.raises(SystemExit, match="no socket named 'x'"):
            select_activated("x", socks)
        with pytest.raises(SystemExit, match="no sockets found via socket activation"):
            select_activated("", [])
    finally:
        for s in (a, b, c):
            s.close()
