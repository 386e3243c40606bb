"""The shim: one small synchronous process per group of running containers (DESIGN.md §1).

It is forked by the fork server (never by berthd itself) and owns the container:
it creates it through the runtime, holds its stdio, writes the json-file log, fans output
out to every attached client, forwards stdin, reaps the init and records its exit status
atomically in ``exit.json`` — so berthd may die and come back at any time.

A poll loop, not asyncio: the shim must stay small (its private memory is what each running
container costs on the host). One shim process (the host) serves a bounded group of
containers, each with its own ``Shim`` and socket (``host``). Its parts:

    main      this entry point: become the shim host, serve its first container, run the loop
    host      the poll loop of one shim process, shared by a bounded group of containers
    loop      one container: setup, the control requests, its reaped children, the exit record
    stdio     clients and fan-out, the container's pipes and stdin, the json-file log
    exec      ``docker exec`` sessions
    helper    the short-lived children that do the heavy work (setup, exec, gzip)
    protocol  every message between berthd and the shim, versioned
"""

from __future__ import annotations

import os
import socket
import traceback

from berth.runtime.shim.host import Host
from berth.linux import prctl
from berth.runtime.shim.loop import Shim
from berth.runtime.shim.protocol import SpawnRequest

__all__ = ["Shim", "main"]


def main(req: SpawnRequest, status_sock: socket.socket, join: socket.socket | None = None) -> None:
    """Run as the shim host of ``req``'s container, and of those the fork server hands over
    on ``join`` (called in the fork server's child; never returns)."""
    code = 0
    try:
        os.setsid()
    except OSError:
        pass
    prctl.set_name("berth-shim")
    prctl.set_child_subreaper()
    host = Host(join)
    try:
        host.add(req, status_sock)
        host.run()
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)
