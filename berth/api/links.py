"""``DELETE /containers/{parent}/{alias}``: a legacy link's name (``docker rm --link /web/db``;
the CLI trims the slashes). With ``link=1`` the link is removed; without it dockerd resolves
the name to the linked container and removes that container, and so does berth."""

from __future__ import annotations

from berth.api.app import App, Routes, no_content
from berth.api.http import Request, Response
from berth.engine import links
from berth.errors import Conflict, NotFound


async def delete_link(app: App, req: Request) -> Response:
    engine = app.containers
    parent, alias = req.match["parent"], req.match["alias"]
    if req.flag("link"):
        links.remove(engine, parent, alias)
        return no_content()
    p = engine.get(parent)
    stored = next((ln for ln in p.host_config.Links or [] if links.parse(ln)[1] == alias), None)
    if stored is None:
        raise NotFound(f"No such container: {parent}/{alias}")
    await engine.remove(links.parse(stored)[0], req.flag("force"), volumes=req.flag("v"))
    return no_content()


ROUTES: Routes = [("DELETE", "/containers/{parent}/{alias}", delete_link)]


def default_link_name(req: Request) -> None:
    """``DELETE /containers/{name}?link=1`` names no parent: dockerd's refusal."""
    if req.flag("link"):
        raise Conflict("Conflict, cannot remove the default link name of the container")
