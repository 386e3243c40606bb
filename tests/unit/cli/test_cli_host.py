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


def test_resolve_tls_follows_the_docker_cli(tmp_path) -> None:
    from berth.client.host import TLSFlags, TLSOptions, resolve_tls

    assert resolve_tls(TLSFlags(), {}) is None
    assert resolve_tls(TLSFlags(), {"DOCKER_TLS_VERIFY": ""}) is None
    (tmp_path / "cert.pem").write_text("x")
    env = {"DOCKER_CERT_PATH": str(tmp_path)}
    # DOCKER_TLS_VERIFY implies TLS; a default key that does not exist is left out
    assert resolve_tls(TLSFlags(), {**env, "DOCKER_TLS_VERIFY": "1"}) == TLSOptions(
        str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem"), "", True)
    assert resolve_tls(TLSFlags(tls=True), env) == TLSOptions(str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem"), "", False)
    assert resolve_tls(TLSFlags(), {**env, "DOCKER_TLS": "1"}) is not None
    # flags win over the environment; --tlsverify=false with DOCKER_TLS_VERIFY set turns it off
    assert resolve_tls(TLSFlags(verify=False), {**env, "DOCKER_TLS_VERIFY": "1"}) is None
    got = resolve_tls(TLSFlags(verify=True, ca="/c", cert="/a", key="/b"), env)
    assert got == TLSOptions("/c", "/a", "/b", True)
    # no DOCKER_CERT_PATH: ~/.docker
    assert resolve_tls(TLSFlags(tls=True), {"HOME": str(tmp_path)}).ca == str(tmp_path / ".docker" / "ca.pem")


def test_global_tls_flags_are_parsed() -> None:
    from berth.cli.main import _split_globals
    from berth.client.host import TLSFlags

    tls = TLSFlags()
    host, rest, _ = _split_globals(["-H", "tcp://h:1", "--tlsverify", "--tlscacert", "/ca", "--tlscert=/c",
                                    "--tlskey", "/k", "--tls=false", "ps"], tls)
    assert (host, rest) == ("tcp://h:1", ["ps"])
    assert tls == TLSFlags(tls=False, verify=True, ca="/ca", cert="/c", key="/k")
