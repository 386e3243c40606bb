"""runtime: OCI spec -> running, isolated container process (see container.py for the lifecycle)."""

from berth.runtime.container import ExecFailed, Init, SetupFailed, create, delete, oom_killed
from berth.runtime.defaults import build_spec

__all__ = ["ExecFailed", "Init", "SetupFailed", "build_spec", "create", "delete", "oom_killed"]
