"""Daemon address: -H, then BERTH_HOST, then DOCKER_HOST, then the default socket."""

import pytest

from berth.client.host import DEFAULT_HOST, parse_host, resolve_host


def test_order() -> None:
    env = {"BERTH_HOST": "unix:///b.sock", "DOCKER_HOST": "unix:///d.sock"}
    assert resolve_host("unix:///h.sock", env) == "unix:///h.sock"
    assert resolve_host(None, env) == "unix:///b.sock"
    assert resolve_host(None, {"DOCKER_HOST": "unix:///d.sock"}) == "unix:///d.sock"
    assert resolve_host(None, {"BERTH_HOST": "", "DOCKER_HOST": ""}) == DEFAULT_HOST
    assert DEFAULT_HOST == "unix:///run/berth/berth.sock"


def test_parse() -> None:
    assert parse_host("unix:///run/x.sock") == ("unix", "/run/x.sock")
    assert parse_host("tcp://127.0.0.1:2375") == ("tcp", ("127.0.0.1", 2375))
    assert parse_host("tcp://[::1]:1") == ("tcp", ("::1", 1))
    with pytest.raises(ValueError):
        parse_host("ssh://x")
