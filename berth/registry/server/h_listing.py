"""Listings: tags (``n``/``last`` pagination with ``Link``), the catalog, and referrers."""

from __future__ import annotations

import json
from urllib.parse import quote

from aiohttp import web

from berth.registry.server.context import Registry
from berth.registry.server.errors import PaginationNumberInvalid
from berth.registry.server.manifests import OCI_INDEX
from berth.registry.server.names import parse_digest


def _page(request: web.Request, items: list[str], path: str) -> tuple[list[str], dict[str, str]]:
    """The slice of sorted items after ``last``, at most ``n`` long, and a Link when more."""
    last = request.query.get("last")
    if last:
        items = [i for i in items if i > last]
    n_text = request.query.get("n")
    if n_text is None or n_text == "":
        return items, {}
    try:
        n = int(n_text)
    except ValueError:
        n = -1
    if n < 0:
        raise PaginationNumberInvalid(detail={"n": n_text[:50]})
    headers = {}
    if len(items) > n:
        items = items[:n]
        if items:
            headers["Link"] = f'<{path}?n={n}&last={quote(items[-1], safe="")}>; rel="next"'
    return items, headers


async def tags(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    name = params["name"]
    items, headers = _page(request, reg.storage.tags(name), f"/v2/{name}/tags/list")
    return web.json_response({"name": name, "tags": items}, headers=headers)


async def catalog(request: web.Request, reg: Registry, account: str) -> web.StreamResponse:
    repos = reg.storage.repositories()
    if reg.auth.kind != "none":
        rules = reg.auth.rules
        repos = [r for r in repos if "pull" in rules.allowed(account, r)]
    items, headers = _page(request, repos, "/v2/_catalog")
    return web.json_response({"repositories": items}, headers=headers)


async def referrers(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    digest = params["digest"]
    parse_digest(digest)
    entries = [json.loads(raw) for raw in reg.storage.referrers(params["name"], digest)]
    headers = {}
    wanted = request.query.get("artifactType")
    if wanted:
        entries = [e for e in entries if e.get("artifactType") == wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    entries.sort(key=lambda e: e["digest"])
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    # Bytes, not text: aiohttp would append "; charset=utf-8", and conformance clients compare
    # the media type byte for byte.
    return web.Response(body=body, content_type=OCI_INDEX, headers=headers)


