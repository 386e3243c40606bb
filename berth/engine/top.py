"""``docker top``: the host's ``ps`` output, cut down to the processes of one container."""

from __future__ import annotations

import asyncio

from berth.engine.containers import Containers
from berth.errors import Conflict, InvalidArgument


async def top(containers: Containers, ref: str, ps_args: str) -> tuple[list[str], list[list[str]]]:
    """-> (ps's column titles, one row per process of the container). ``ps_args`` as given to ps
    (default ``-ef``); it must print a PID column. Raises Conflict (not running), InvalidArgument."""
    c = containers.get(ref)
    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    pids: set[int] = set(containers.pids(c))
    proc = await asyncio.create_subprocess_exec("ps", *(ps_args or "-ef").split(), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise InvalidArgument(f"Error running ps: {err.decode().strip()}")
    lines = out.decode().splitlines()
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    pid_i = titles.index("PID")
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        try:
            if int(fields[pid_i]) in pids:
                procs.append(fields)
        except (ValueError, IndexError):
            continue
    return titles, procs
