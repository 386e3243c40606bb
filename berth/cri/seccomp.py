"""The seccomp profile of a CRI security context (a container's or a sandbox's), as the
engine's ``--security-opt seccomp=`` value.

    profile(sc)                          # "" (Docker's default), "unconfined" or a profile's JSON
    profile(sandbox_sc, "unconfined")    # a pause that asked for nothing runs unconfined
"""

from __future__ import annotations

from typing import Any

from cri_api.v1 import api_pb2 as pb

from berth.errors import InvalidArgument


def profile(sc: Any, unset: str = "") -> str:
    """"" (RuntimeDefault: Docker's default profile), "unconfined", or a Localhost profile's
    JSON. ``seccomp`` wins over the deprecated ``seccomp_profile_path`` (``runtime/default``,
    ``unconfined``, ``localhost/<path>``). ``unset``: what neither field set means ("": a
    container's RuntimeDefault; a sandbox's is "unconfined", as containerd's)."""
    if not sc.HasField("seccomp") and not sc.seccomp_profile_path:
        return unset
    if sc.HasField("seccomp"):
        kind, path = sc.seccomp.profile_type, sc.seccomp.localhost_ref
    else:
        legacy = sc.seccomp_profile_path
        kind = pb.SecurityProfile.ProfileType.Unconfined if legacy == "unconfined" else \
            pb.SecurityProfile.ProfileType.Localhost if legacy.startswith("localhost/") else \
            pb.SecurityProfile.ProfileType.RuntimeDefault
        path = legacy.removeprefix("localhost")
    if kind == pb.SecurityProfile.ProfileType.Unconfined:
        return "unconfined"
    if kind != pb.SecurityProfile.ProfileType.Localhost:
        return ""
    if not path.startswith("/"):
        raise InvalidArgument(f"seccomp profile path must be absolute: {path!r}")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise InvalidArgument(f"failed to load seccomp profile {path}: {e.strerror}") from None
