"""runtime: OCI spec -> running, isolated container process (see container.py for the lifecycle).

Names are loaded lazily: berthd imports ``berth.runtime.defaults`` and the shim protocol on
its start-up path and must not pay for the container init's modules.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExecFailed", "Init", "SetupFailed", "build_spec", "create", "delete", "oom_killed"]


def __getattr__(name: str) -> Any:
    if name == "build_spec":
        from berth.runtime.defaults import build_spec
        return build_spec
    if name in __all__:
        from berth.runtime import container
        return getattr(container, name)
    raise AttributeError(f"module 'berth.runtime' has no attribute {name!r}")
