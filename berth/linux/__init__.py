"""linux: the only place that uses ctypes or raw syscalls. Thin, typed wrappers, no policy.

Each module wraps one area (mount, sched, caps, prctl, ...); every wrapper raises
``OSError(errno, "<syscall>", path)`` on failure.
"""
