"""Capability names and Docker's rules for the capability set of a container (pure).

Vocabulary: a *cap name* is ``CAP_CHOWN``; a *mask* has bit n set for capability number n.
"""

from __future__ import annotations

from collections.abc import Iterable

from berth.errors import InvalidArgument

# Index = capability number (linux/capability.h), up to CAP_CHECKPOINT_RESTORE (40).
ALL_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
    "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAP_NUMBER: dict[str, int] = {name: i for i, name in enumerate(ALL_CAPS)}

# moby daemon/pkg/oci/caps/defaults.go, in its order (the order config.json shows).
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


def normalize(names: Iterable[str]) -> list[str]:
    """``net_admin`` -> ``CAP_NET_ADMIN``; ``all`` -> ``ALL``; duplicates removed, order kept.

    Raises:
        InvalidArgument: ``unknown capability: "CAP_X"`` (the engine adds ``invalid CapAdd: ``).
    """
    out: list[str] = []
    for raw in names:
        name = raw.strip().upper()
        if name != "ALL" and not name.startswith("CAP_"):
            name = "CAP_" + name
        if name != "ALL" and name not in CAP_NUMBER:
            raise InvalidArgument(f'unknown capability: "{name}"')
        if name not in out:
            out.append(name)
    return out


def tweak(base: Iterable[str], cap_add: Iterable[str], cap_drop: Iterable[str],
          privileged: bool) -> list[str]:
    """Docker's TweakCapabilities: the container's capability list for these flags."""
    if privileged:
        return list(ALL_CAPS)
    adds, drops = normalize(cap_add), normalize(cap_drop)
    if "ALL" in adds:
        return [c for c in ALL_CAPS if c not in drops]
    if "ALL" in drops:
        return [c for c in adds if c != "ALL"]
    caps = [c for c in base if c not in drops]
    caps += [c for c in adds if c not in caps]
    return caps


def to_mask(names: Iterable[str] | None) -> int:
    """Names -> mask. Names this table does not know are ignored (like runc's unknown caps)."""
    mask = 0
    for name in names or ():
        n = CAP_NUMBER.get(name)
        if n is not None:
            mask |= 1 << n
    return mask
