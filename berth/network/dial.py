"""TCP connections made inside another network namespace (the CRI's PortForward).

A socket stays in the namespace it was created in, so the connection is made by a throwaway
thread that joined the namespace (``linux.netns.run_in_netns``) and then handed to berthd's
event loop, which never changes namespace itself.
"""

from __future__ import annotations

import socket

from berth.linux.netns import run_in_netns


def dial_localhost(ns_path: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A connected, non-blocking TCP socket to ``localhost:port`` in the namespace at
    ``ns_path`` (IPv4 first, then IPv6, as containerd's port forward dials ``localhost``).

    Raises:
        OSError: nothing listens there (the last address's error), or the namespace is gone.
    """

    def connect() -> socket.socket:
        err: OSError | None = None
        for host in ("127.0.0.1", "::1"):
            try:
                s = socket.create_connection((host, port), timeout)
            except OSError as e:
                err = err or e
                continue
            s.setblocking(False)
            return s
        assert err is not None
        raise err

    return run_in_netns(ns_path, connect)
