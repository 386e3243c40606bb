"""The shim: one small synchronous process per running container (DESIGN.md §1).

It is forked by the fork server (never by berthd itself) and owns the container:
it creates it through the runtime, holds its stdio, writes the json-file log, fans output
out to every attached client, forwards stdin, reaps the init and records its exit status
atomically in ``exit.json`` — so berthd may die and come back at any time.

A poll loop, not asyncio: the shim must stay small (its private memory is what each running
container costs on the host). Its parts:

    main      this entry point: become the shim, report to berthd, run the loop
    loop      the poll loop, the control requests, reaping, the exit record
    stdio     clients and fan-out, the container's pipes and stdin, the json-file log
    exec      ``docker exec`` sessions
    helper    the short-lived children that do the heavy work (setup, exec, gzip)
    protocol  every message between berthd and the shim, versioned
"""

from __future__ import annotations

import os
import socket

from berth.runtime.shim import protocol
from berth.runtime.shim.loop import Shim
from berth.runtime.shim.protocol import SpawnReply, SpawnRequest
from berth.runtime.shim.stdio import POLLIN

__all__ = ["Shim", "main"]


def main(req: SpawnRequest, status_sock: socket.socket) -> None:
    """Run as the shim (called in the grandchild of the fork server; never returns)."""
    code = 0
    try:
        os.setsid()
    except OSError:
        pass
    from berth.linux import prctl
    prctl.set_name("berth-shim")
    shim = Shim(req, status_sock)
    try:
        try:
            shim.setup()
        except Exception as e:  # setup failure: report, leave no socket behind
            status_sock.sendall(protocol.encode(SpawnReply(error=str(e) or e.__class__.__name__)))
            status_sock.close()
            os._exit(1)
        try:
            status_sock.sendall(protocol.encode(SpawnReply(pid=shim.init_pid, shim_pid=os.getpid())))
        except OSError:
            pass  # berthd died meanwhile: the loop sees the hang-up and aborts the container
        # berthd keeps this connection open until it has sent "start": if it dies before
        # that (the connection hangs up), nobody will ever start this container: abort it.
        status_sock.setblocking(False)
        shim.hub.poll.register(status_sock.fileno(), POLLIN)
        shim.run()
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    os._exit(code)
