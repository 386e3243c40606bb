"""Users, groups and PATH lookup as runc and Go's exec.LookPath do them."""

from __future__ import annotations

import os
import stat

import pytest

from berth.runtime.users import (
    ExecNotFound, UnknownUser, home_of, lookup_path, parse_group, parse_passwd, resolve,
)

PASSWD = parse_passwd("""root:x:0:0:root:/root:/bin/sh
# a comment
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
alice:x:1000:1000:alice:/home/alice:/bin/sh
broken line
""")
GROUP = parse_group("root:x:0:\nnogroup:x:65534:\nalice:x:1000:\nstaff:x:50:alice,bob\nwheel:x:10:bob\n")


def test_parse() -> None:
    assert [p.name for p in PASSWD] == ["root", "nobody", "alice"]
    assert GROUP[3].members == ("alice", "bob")


@pytest.mark.parametrize("user, uid, gid, groups, home", [
    ("", 0, 0, (0,), "/root"),
    ("root", 0, 0, (0,), "/root"),
    ("alice", 1000, 1000, (1000, 50), "/home/alice"),
    ("1000", 1000, 1000, (1000, 50), "/home/alice"),
    ("alice:staff", 1000, 50, (50,), "/home/alice"),
    ("alice:10", 1000, 10, (10,), "/home/alice"),
    ("2000", 2000, 0, (0,), "/"),
    ("2000:3000", 2000, 3000, (3000,), "/"),
    ("nobody", 65534, 65534, (65534,), "/nonexistent"),
])
def test_resolve(user: str, uid: int, gid: int, groups: tuple[int, ...], home: str) -> None:
    u = resolve(user, PASSWD, GROUP)
    assert (u.uid, u.gid, u.additional_gids, u.home) == (uid, gid, groups, home)


def test_unknown_user_and_group() -> None:
    with pytest.raises(UnknownUser, match="^unable to find user nosuch: no matching entries in passwd file$"):
        resolve("nosuch", PASSWD, GROUP)
    with pytest.raises(UnknownUser, match="^unable to find group nogrp: no matching entries in group file$"):
        resolve("alice:nogrp", PASSWD, GROUP)


def test_home_of() -> None:
    assert home_of(1000, PASSWD) == "/home/alice"
    assert home_of(4242, PASSWD) == "/"


def _fake_stat(files: dict[str, int]):
    def st(path: str) -> os.stat_result:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return os.stat_result((files[path], 0, 0, 1, 0, 0, 0, 0, 0, 0))
    return st


FS = _fake_stat({"/bin/sh": stat.S_IFREG | 0o755, "/usr/bin/data": stat.S_IFREG | 0o644,
                 "/etc": stat.S_IFDIR | 0o755, "/bin/data": stat.S_IFREG | 0o755})


def test_lookup_path() -> None:
    env = ["HOME=/", "PATH=/usr/bin:/bin"]
    assert lookup_path("sh", env, FS) == "/bin/sh"
    assert lookup_path("data", env, FS) == "/bin/data"  # /usr/bin/data is not executable
    assert lookup_path("/bin/sh", [], FS) == "/bin/sh"


@pytest.mark.parametrize("name, env, message", [
    ("nosuchcmd", ["PATH=/bin"], 'exec: "nosuchcmd": executable file not found in $PATH'),
    ("sh", [], 'exec: "sh": executable file not found in $PATH'),
    ("/nosuch", ["PATH=/bin"], 'exec: "/nosuch": stat /nosuch: no such file or directory'),
    ("/etc", ["PATH=/bin"], 'exec: "/etc": permission denied'),
    ("/usr/bin/data", ["PATH=/bin"], 'exec: "/usr/bin/data": permission denied'),
])
def test_lookup_path_errors(name: str, env: list[str], message: str) -> None:
    with pytest.raises(ExecNotFound) as e:
        lookup_path(name, env, FS)
    assert str(e.value) == message
