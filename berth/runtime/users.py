"""Users, groups and executables inside the container, resolved as runc resolves them (pure).

The init calls these after pivot_root, on the container's own /etc/passwd and /etc/group, so a
name always means what the image says it means. Nothing here touches the host.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from berth.errors import NotFound


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


class UnknownUser(NotFound):
    pass


def _int(s: str) -> int | None:
    return int(s) if s.isdigit() else None


def parse_passwd(text: str) -> list[PasswdEntry]:
    out = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) < 4 or line.startswith("#"):
            continue
        uid, gid = _int(parts[2]), _int(parts[3])
        if uid is None or gid is None:
            continue
        out.append(PasswdEntry(parts[0], uid, gid, parts[5] if len(parts) > 5 else ""))
    return out


def parse_group(text: str) -> list[GroupEntry]:
    out = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) < 3 or line.startswith("#"):
            continue
        gid = _int(parts[2])
        if gid is None:
            continue
        members = tuple(m for m in parts[3].split(",") if m) if len(parts) > 3 else ()
        out.append(GroupEntry(parts[0], gid, members))
    return out


def resolve(spec_user: str, passwd: list[PasswdEntry], groups: list[GroupEntry]) -> ExecUser:
    """Docker's ``User`` string (``name``, ``uid``, ``name:group``, ``uid:gid``...) -> ids.

    As runc's GetExecUser: a name must exist in passwd; a number need not. Without an explicit
    group, the supplementary groups are those listing the user by name. Docker also puts the
    primary gid first in the additional gids.

    Raises:
        UnknownUser: ``unable to find user nosuch: no matching entries in passwd file``
    """
    user_arg, _, group_arg = (spec_user or "0").partition(":")
    uid_num = _int(user_arg)
    entry = next((p for p in passwd if p.name == user_arg or (uid_num is not None and p.uid == uid_num)), None)
    if entry is None and uid_num is None:
        raise UnknownUser(f"unable to find user {user_arg}: no matching entries in passwd file")
    uid = entry.uid if entry else uid_num or 0
    gid = entry.gid if entry else 0
    home = entry.home if entry and entry.home else "/"
    sgids: list[int] = []
    if group_arg:
        gid_num = _int(group_arg)
        group = next((g for g in groups if g.name == group_arg or (gid_num is not None and g.gid == gid_num)), None)
        if group is None and gid_num is None:
            raise UnknownUser(f"unable to find group {group_arg}: no matching entries in group file")
        gid = group.gid if group else gid_num or 0
    elif entry is not None:
        sgids = [g.gid for g in groups if entry.name in g.members]
    additional = [gid] + [g for g in sgids if g != gid]
    return ExecUser(uid, gid, tuple(dict.fromkeys(additional)), home)


def additional_groups(wanted: tuple[str, ...] | list[str], groups: list[GroupEntry]) -> tuple[int, ...]:
    """``--group-add``: each a group name or gid in the container's /etc/group, or any number
    (runc's GetAdditionalGroups).

    Raises:
        UnknownUser: ``Unable to find group foo: no matching entries in group file`` for a name
        the group file does not have.
    """
    out: list[int] = []
    for ag in wanted:
        match = next((g.gid for g in groups if g.name == ag or str(g.gid) == ag), None)
        if match is None:
            if not ag.isdigit():
                raise UnknownUser(f"Unable to find group {ag}: no matching entries in group file")
            match = int(ag)
        out.append(match)
    return tuple(dict.fromkeys(out))


def is_lookup_failure(message: str) -> bool:
    """Whether a start error is one of the lookups above: dockerd makes them while it writes the
    spec (getUser), so the client sees them bare, with no OCI runtime words around them."""
    return message.startswith(("unable to find user ", "unable to find group ", "Unable to find group "))


def home_of(uid: int, passwd: list[PasswdEntry]) -> str:
    return next((p.home for p in passwd if p.uid == uid and p.home), "/")


class ExecNotFound(Exception):
    """str() is Docker's (Go exec.LookPath) message, e.g. ``exec: "x": executable file not found in $PATH``."""


def _strerror(err: int) -> str:
    s = os.strerror(err)
    return s[:1].lower() + s[1:]


class _NotExecutable(Exception):
    pass


def _check_executable(path: str, stat_fn: Callable[[str], os.stat_result]) -> None:
    st = stat_fn(path)  # OSError propagates: the caller words it
    if stat.S_ISDIR(st.st_mode) or not st.st_mode & 0o111:
        raise _NotExecutable


def lookup_path(name: str, env: list[str],
                stat_fn: Callable[[str], os.stat_result] = os.stat) -> str:
    """Go's exec.LookPath with the container's PATH: the file execve should run.

    Raises:
        ExecNotFound: with Docker's wording for missing, non-executable and directory targets.
    """
    if "/" in name:
        try:
            _check_executable(name, stat_fn)
        except _NotExecutable:
            raise ExecNotFound(f'exec: "{name}": permission denied') from None
        except OSError as e:
            raise ExecNotFound(f'exec: "{name}": stat {name}: {_strerror(e.errno or 0)}') from None
        return name
    path_env = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), "")
    for d in path_env.split(":"):
        candidate = os.path.join(d or ".", name)
        try:
            _check_executable(candidate, stat_fn)
        except (OSError, _NotExecutable):
            continue
        return candidate
    raise ExecNotFound(f'exec: "{name}": executable file not found in $PATH')
