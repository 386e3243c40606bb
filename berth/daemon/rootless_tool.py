"""A rootless engine's host-side network tool (pasta or slirp4netns, ``rootless_net.py`` and
``rootless_slirp.py``): a process of the user's outside the engine's namespaces, which must
live as long as the namespaces' holder does, not as long as berthd (berthd restarts in between).

    tool = HostTool(proc)
    tool.stop_with(holder)      # a detached watcher stops it when the holder exits
    tool.stop()                 # at once (a start that failed)

A subclass overrides ``watch`` to do work meanwhile (slirp4netns's port forwarding).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess


class HostTool:
    def __init__(self, proc: subprocess.Popen[bytes]):
        self.proc = proc

    def stop_with(self, holder: int) -> None:
        """Leave the tool running for as long as the holder lives: a detached watcher (its own
        session, none of berthd's descriptors) runs ``watch`` and then stops the tool."""
        tool, held = os.pidfd_open(self.proc.pid), os.pidfd_open(holder)
        if os.fork() == 0:
            try:
                os.setsid()
                for fd in os.listdir("/proc/self/fd"):  # nothing of berthd's (its locks) is kept
                    if int(fd) > 2 and int(fd) not in (tool, held):
                        try:
                            os.close(int(fd))
                        except OSError:
                            pass
                self.watch(holder, held, tool)
                signal.pidfd_send_signal(tool, signal.SIGTERM)
            finally:
                os._exit(0)
        os.close(tool)
        os.close(held)

    def watch(self, holder: int, held: int, tool: int) -> None:
        """Return once the holder (pidfd ``held``) or the tool (pidfd ``tool``) has exited."""
        select.select([held, tool], [], [])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
