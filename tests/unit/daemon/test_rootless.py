"""A rootless berthd's pieces that need no namespace: the id maps read from subuid/subgid
files, its XDG paths and defaults under daemon.json, and how the CLI finds its socket."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth.client.host import resolve_host, rootless_host
from berth.daemon import rootless
from berth.daemon.config import load
from berth.daemon.rootless_boot import id_maps


def _files(tmp_path: Path, subuid: str, subgid: str) -> tuple[Path, Path]:
    (tmp_path / "subuid").write_text(subuid)
    (tmp_path / "subgid").write_text(subgid)
    return tmp_path / "subuid", tmp_path / "subgid"


def test_maps_stack_the_users_ranges_from_root_and_its_own_id_above(tmp_path: Path) -> None:
    u, g = _files(tmp_path, "other:100000:65536\nalice:165536:65536\n1001:300000:10\n",
                  "alice:165536:1000\n")
    m = id_maps("alice", 1001, 1002, u, g)
    assert not m.single
    # root is the first subordinate id (by name, then by uid), the user's own id above them all
    assert m.uid == ((0, 165536, 65536), (65536, 300000, 10), (65546, 1001, 1))
    assert m.gid == ((0, 165536, 1000), (1000, 1002, 1))


@pytest.mark.parametrize("subuid, subgid", [("", ""), ("alice:165536:65536\n", ""), ("bob:1:2\n", "bob:1:2\n")])
def test_without_both_ranges_the_map_is_a_single_id(tmp_path: Path, subuid: str, subgid: str) -> None:
    m = id_maps("alice", 1001, 1002, *_files(tmp_path, subuid, subgid))
    assert m.single and m.uid == ((0, 1001, 1),) and m.gid == ((0, 1002, 1),)


def test_missing_files_mean_no_ranges(tmp_path: Path) -> None:
    assert id_maps("alice", 1001, 1001, tmp_path / "no", tmp_path / "no").single


def test_paths_follow_xdg() -> None:
    p = rootless.Paths.from_env({"HOME": "/home/a", "XDG_RUNTIME_DIR": "/run/user/7"})
    assert p == rootless.Paths(Path("/home/a/.local/share/berth"), Path("/run/user/7/berth"),
                               Path("/run/user/7/berth.sock"), Path("/home/a/.config/berth/daemon.json"))
    p = rootless.Paths.from_env({"HOME": "/h", "XDG_RUNTIME_DIR": "/r", "XDG_DATA_HOME": "/d",
                                 "XDG_CONFIG_HOME": "/c"})
    assert (p.data_root, p.config_file) == (Path("/d/berth"), Path("/c/berth/daemon.json"))


def test_no_runtime_dir_is_an_error_that_says_what_to_set() -> None:
    with pytest.raises(rootless.RootlessError, match=r"\$XDG_RUNTIME_DIR needs to be set"):
        rootless.Paths.from_env({"HOME": "/h"})


def test_rootless_defaults_give_way_to_the_file_and_the_flags(tmp_path: Path) -> None:
    d = rootless.defaults(rootless.Paths.from_env({"HOME": "/h", "XDG_RUNTIME_DIR": "/r"}))
    conf = tmp_path / "daemon.json"
    conf.write_text('{"exec-root": "/x"}')
    args = load(["--config-file", str(conf), "--data-root", "/y"], d)
    assert (args.data_root, args.exec_root, args.hosts) == ("/y", "/x", ["unix:///r/berth.sock"])
    assert args.rootless and args.group == "" and not args.cri
    # a missing default file is an empty one, as root's
    args = load([], d, str(tmp_path / "none.json"))
    assert args.data_root == "/h/.local/share/berth"


def test_cli_finds_the_rootless_socket_only_when_roots_is_out_of_reach(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    assert rootless_host(env, str(tmp_path / "root.sock")) is None  # no rootless socket yet
    (tmp_path / "berth.sock").touch()
    assert rootless_host(env, str(tmp_path / "root.sock")) == f"unix://{tmp_path}/berth.sock"
    (tmp_path / "root.sock").touch()
    os.chmod(tmp_path / "root.sock", 0o600)
    if os.geteuid() == 0:  # root may use any socket: root's wins
        assert rootless_host(env, str(tmp_path / "root.sock")) is None
    assert resolve_host(None, {**env, "DOCKER_HOST": "unix:///d.sock"}) == "unix:///d.sock"
    assert resolve_host("unix:///f.sock", env) == "unix:///f.sock"


def test_the_port_start_is_the_hosts_sysctl_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from berth.daemon.rootless_net import PORT_START_ENV, unprivileged_port_start
    monkeypatch.delenv(PORT_START_ENV, raising=False)
    want = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    assert unprivileged_port_start() == want
    monkeypatch.setenv(PORT_START_ENV, "2000")
    assert unprivileged_port_start() == 2000


def test_version_and_help_need_no_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    from berth.daemon.main import parse_args
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert parse_args(["--rootless", "--version"]).version
    with pytest.raises(SystemExit, match=r"\$XDG_RUNTIME_DIR needs to be set"):
        parse_args(["--rootless"])


def test_the_network_tool_is_pasta_then_slirp4netns_unless_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from berth.daemon.rootless_net import choose
    for name in ("pasta", "slirp4netns"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("BERTH_ROOTLESS_NET", raising=False)
    assert choose() == "pasta"
    monkeypatch.setenv("BERTH_ROOTLESS_NET", "slirp4netns")
    assert choose() == "slirp4netns"
    (tmp_path / "slirp4netns").unlink()
    with pytest.raises(ValueError, match="slirp4netns not found \\(apt-get install slirp4netns\\)"):
        choose()
    monkeypatch.setenv("BERTH_ROOTLESS_NET", "vde")
    with pytest.raises(ValueError, match="BERTH_ROOTLESS_NET=vde: not one of pasta, slirp4netns"):
        choose()
    monkeypatch.delenv("BERTH_ROOTLESS_NET")
    (tmp_path / "pasta").unlink()
    assert choose() == ""


def test_slirp_port_driver_reads_listening_sockets_of_the_namespace(tmp_path: Path) -> None:
    from berth.daemon.rootless_slirp import listening
    import socket
    with socket.socket() as a, socket.socket() as b, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        a.bind(("0.0.0.0", 0))
        a.listen()
        b.bind(("127.0.0.1", 0))
        b.listen()
        u.bind(("0.0.0.0", 0))
        found = listening(os.getpid())
        assert {("tcp", "0.0.0.0", a.getsockname()[1]), ("tcp", "127.0.0.1", b.getsockname()[1]),
                ("udp", "0.0.0.0", u.getsockname()[1])} <= found


def test_a_storage_driver_not_known_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from berth.daemon.rootless_storage import StorageError, choose
    monkeypatch.setenv("BERTH_ROOTLESS_STORAGE", "zfs")
    with pytest.raises(StorageError, match="BERTH_ROOTLESS_STORAGE=zfs: not one of overlay2, fuse-overlayfs"):
        choose(tmp_path)
    monkeypatch.setenv("BERTH_ROOTLESS_STORAGE", "fuse-overlayfs")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StorageError, match="fuse-overlayfs not found \\(apt-get install fuse-overlayfs\\)"):
        choose(tmp_path)
