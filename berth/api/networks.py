"""/networks endpoints. Each handler parses, calls the engine, and shapes Docker's JSON."""

from __future__ import annotations

import json
from typing import Any

from berth.api.http import Request, Response, Router
from berth.api.filters import labels_match, parse_filters
from berth.api.system import json_response
from berth.engine.attachments import Attachments
from berth.engine.logs import parse_time
from berth.engine.networks import Network, Networks
from berth.errors import InvalidArgument


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError as e:
        raise InvalidArgument(f"invalid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("invalid JSON: expected an object")
    return body


def matches(nets: Networks, n: Network, filters: dict[str, list[str]]) -> bool:
    for key, vals in filters.items():
        if key == "name":
            if not any(v in n.name for v in vals):
                return False
        elif key == "id":
            if not any(n.id.startswith(v) for v in vals):
                return False
        elif key == "driver":
            if n.driver not in vals:
                return False
        elif key == "label":
            if not labels_match(n.labels, vals):
                return False
        elif key == "type":
            for v in vals:
                if v not in ("custom", "builtin"):
                    raise InvalidArgument(f"invalid filter: 'type'='{v}'")
            if ("custom" in vals) != n.user_defined and ("builtin" in vals) == n.user_defined:
                return False
        elif key == "dangling":
            want = vals[0] in ("true", "1")
            if want != (not nets.containers_on(n) and n.user_defined):
                return False
        elif key == "scope":
            if "local" not in vals:
                return False
        elif key == "until":
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


def routes(router: Router, ctx: object) -> None:
    nets: Networks = ctx.networks  # type: ignore[attr-defined]
    att: Attachments = ctx.attachments  # type: ignore[attr-defined]
    containers = ctx.containers  # type: ignore[attr-defined]

    async def list_(req: Request) -> Response:
        filters = parse_filters(req)
        out = [nets.network_json(n, detailed=False) for n in nets.list() if matches(nets, n, filters)]
        return json_response(out)

    async def inspect(req: Request) -> Response:
        return json_response(nets.network_json(nets.get(req.match["id"])))

    async def create(req: Request) -> Response:
        b = _body(await req.read())
        if req.version_at_least("1.48") and b.get("EnableIPv4") is False:
            # 1.48 lets a network go without IPv4; berth has no IPv6, so it would have no addresses.
            raise InvalidArgument("IPv4 or IPv6 must be enabled" if not b.get("EnableIPv6") else
                                  "IPv6 networks are not supported by berth")
        n = await nets.create(b.get("Name") or "", driver=b.get("Driver") or "bridge",
                              internal=bool(b.get("Internal")), attachable=bool(b.get("Attachable")),
                              labels=b.get("Labels") or {}, options=b.get("Options") or {},
                              ipam=b.get("IPAM") or {}, enable_ipv6=bool(b.get("EnableIPv6")))
        return json_response({"Id": n.id, "Warning": ""}, 201)

    async def delete(req: Request) -> Response:
        await nets.remove(req.match["id"])
        return Response(204, b"", content_type=None)

    async def connect(req: Request) -> Response:
        b = _body(await req.read())
        c = containers.get(b.get("Container") or "")
        pid = c.state.pid if c.running else 0
        await nets.connect(req.match["id"], att.view(c), b.get("EndpointConfig"), pid)
        return Response(200, b"", content_type=None)

    async def disconnect(req: Request) -> Response:
        b = _body(await req.read())
        ref = b.get("Container") or ""
        try:
            cid = containers.get(ref).id
        except Exception:
            if not b.get("Force"):
                raise
            cid = ref
        await nets.disconnect(req.match["id"], cid, bool(b.get("Force")))
        return Response(200, b"", content_type=None)

    async def prune(req: Request) -> Response:
        filters = parse_filters(req)
        until = parse_time(filters["until"][0]) if "until" in filters else None

        def keep(n: Network) -> bool:
            if until is not None and (parse_time(n.created) or 0) >= until:
                return True
            return "label" in filters and not labels_match(n.labels, filters["label"])

        deleted = await nets.prune(keep)
        return json_response({"NetworksDeleted": deleted})

    router.add("GET", "/networks", list_)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", delete)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
