"""Swarm endpoints of a node that is in no swarm: /swarm, /nodes, /services, /tasks,
/secrets, /configs answer 503 as a non-swarm dockerd does (moby daemon/cluster: errNoManager,
errNoSwarm), so clients that tidy up (docker-py ``swarm.leave(force=True)``) see what they expect.

berth runs no swarm: ``/swarm/init`` and ``/swarm/join`` are not served.
"""

from __future__ import annotations

from berth.api.app import App, Routes
from berth.api.http import Request, Response
from berth.errors import Unavailable

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
               'to connect this node to swarm and try again.')
NOT_IN_SWARM = "This node is not part of a swarm"

# (method, path) of every swarm-manager endpoint in the Engine API (swagger v1.50)
MANAGER_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/swarm"), ("POST", "/swarm/update"), ("GET", "/swarm/unlockkey"), ("POST", "/swarm/unlock"),
    ("GET", "/nodes"), ("GET", "/nodes/{id}"), ("DELETE", "/nodes/{id}"), ("POST", "/nodes/{id}/update"),
    ("GET", "/services"), ("POST", "/services/create"), ("GET", "/services/{id}"),
    ("DELETE", "/services/{id}"), ("POST", "/services/{id}/update"), ("GET", "/services/{id}/logs"),
    ("GET", "/tasks"), ("GET", "/tasks/{id}"), ("GET", "/tasks/{id}/logs"),
    ("GET", "/secrets"), ("POST", "/secrets/create"), ("GET", "/secrets/{id}"),
    ("DELETE", "/secrets/{id}"), ("POST", "/secrets/{id}/update"),
    ("GET", "/configs"), ("POST", "/configs/create"), ("GET", "/configs/{id}"),
    ("DELETE", "/configs/{id}"), ("POST", "/configs/{id}/update"),
)


async def not_manager(app: App, req: Request) -> Response:
    raise Unavailable(NOT_MANAGER)


async def leave(app: App, req: Request) -> Response:
    raise Unavailable(NOT_IN_SWARM)


ROUTES: Routes = [*((method, path, not_manager) for method, path in MANAGER_ROUTES),
                  ("POST", "/swarm/leave", leave)]
