"""The aiohttp application: one dispatcher over the Distribution API's paths, the error
middleware (spec codes -> statuses, JSON bodies), auth checks and the access log.

Paths are matched here rather than by aiohttp's router because repository names contain "/":
each pattern anchors on the API's own suffix (``/manifests/<ref>``, ``/blobs/uploads/...``)
and the rest is the name, which is then checked against the spec's grammar.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from berth.registry.server import auth as authz
from berth.registry.server import h_blobs, h_listing, h_manifests, h_token, h_uploads
from berth.registry.server.config import Config
from berth.registry.server.context import (ACCOUNT, API_VERSION, GRANTED, REGISTRY, Handler,
                                           Registry, authenticate, challenge, error_response)
from berth.registry.server.errors import NotFoundPath, RegistryError, Unauthorized, Unsupported
from berth.registry.server.metrics import Metrics
from berth.registry.server.names import check_name
from berth.registry.server.storage import Storage
from berth.registry.server.uploads import Uploads

__all__ = ["ACCOUNT", "GRANTED", "REGISTRY", "Registry", "access_logger_class", "authenticate",
           "error_response", "make_app"]

log = logging.getLogger("berth.registry")


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    methods: dict[str, tuple[Handler, str]]   # method -> (handler, action: pull/push/delete)


def _routes() -> list[Route]:
    def p(suffix: str) -> re.Pattern[str]:
        return re.compile(rf"/v2/(?P<name>.+)/{suffix}")

    pull_get = {"GET": "pull", "HEAD": "pull"}
    return [
        Route(p(r"blobs/uploads/(?P<uuid>[^/]+)"), {
            "GET": (h_uploads.status, "push"), "PATCH": (h_uploads.patch, "push"),
            "PUT": (h_uploads.put, "push"), "DELETE": (h_uploads.cancel, "push")}),
        Route(p(r"blobs/uploads/?"), {"POST": (h_uploads.start, "push")}),
        Route(p(r"blobs/(?P<digest>[^/]+)"), {
            **{m: (h_blobs.get, a) for m, a in pull_get.items()},
            "DELETE": (h_blobs.delete, "delete")}),
        Route(p(r"manifests/(?P<reference>[^/]+)"), {
            **{m: (h_manifests.get, a) for m, a in pull_get.items()},
            "PUT": (h_manifests.put, "push"), "DELETE": (h_manifests.delete, "delete")}),
        Route(p(r"tags/list"), {"GET": (h_listing.tags, "pull")}),
        Route(p(r"referrers/(?P<digest>[^/]+)"), {"GET": (h_listing.referrers, "pull")}),
    ]


# -- errors ---------------------------------------------------------------------------------


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as err:
        return error_response(err)
    except web.HTTPException:
        raise
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("%s %s", request.method, request.path)
        return web.json_response({"errors": [{"code": "UNKNOWN", "message": "internal error",
                                              "detail": None}]}, status=500)


# -- dispatch -------------------------------------------------------------------------------


async def v2_root(request: web.Request) -> web.StreamResponse:
    reg = request.app[REGISTRY]
    account, _ = await authenticate(request, reg, None)
    if reg.auth.kind == "basic" and account == authz.ANONYMOUS:
        raise Unauthorized(challenge=challenge(reg, request, None))
    request[ACCOUNT] = account
    return web.json_response({}, headers=dict([API_VERSION]))


async def catalog(request: web.Request) -> web.StreamResponse:
    reg = request.app[REGISTRY]
    scope = authz.Scope("registry", "catalog", frozenset({"*"}))
    if reg.auth.kind == "bearer":
        account, _ = await authenticate(request, reg, scope)
    else:
        account, _ = await authenticate(request, reg, None)
        if reg.auth.kind == "basic" and account == authz.ANONYMOUS:
            raise Unauthorized(challenge=challenge(reg, request, None))
    request[ACCOUNT] = account
    return await h_listing.catalog(request, reg, account)


async def dispatch(request: web.Request) -> web.StreamResponse:
    reg = request.app[REGISTRY]
    path = request.path
    for route in request.app[ROUTES]:
        m = route.pattern.fullmatch(path)
        if m is None:
            continue
        params = m.groupdict()
        entry = route.methods.get(request.method)
        if entry is None:
            raise Unsupported(f"method {request.method} not allowed on {path[:200]}")
        handler, action = entry
        name = check_name(params["name"])
        actions = {"pull": {"pull"}, "push": {"pull", "push"}, "delete": {"delete"}}[action]
        scope = authz.Scope("repository", name, frozenset(actions))
        if reg.auth.kind != "bearer":  # Basic rules need only the action itself
            scope = authz.Scope("repository", name, frozenset({action}))
        account, granted = await authenticate(request, reg, scope)
        request[ACCOUNT] = account
        request[GRANTED] = granted
        if reg.read_only and action != "pull":
            raise Unsupported("the registry is in read-only mode")
        return await handler(request, reg, params)
    raise NotFoundPath(f"no such path: {path[:200]}")


ROUTES = web.AppKey("routes", list[Route])


class AccessLogger(AbstractAccessLogger):
    """One line per request (remote, account, request line, status, bytes in/out, seconds);
    it also feeds the request counters of /metrics."""

    metrics: Metrics | None = None
    quiet = False

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        bytes_in = request.content.total_bytes
        # body bytes: a FileResponse's are sent by sendfile, which body_length does not count
        bytes_out = 0 if request.method == "HEAD" else (
            response.content_length if response.content_length is not None
            else response.body_length)
        if self.metrics is not None:
            self.metrics.request(request.method, response.status, bytes_in, bytes_out)
        if not self.quiet:
            account = request.get(ACCOUNT) or "-"
            self.logger.info('%s %s "%s %s HTTP/%d.%d" %d %d %d %.6f', request.remote, account,
                             request.method, request.path_qs, request.version.major,
                             request.version.minor, response.status, bytes_in, bytes_out, time)

    @property
    def enabled(self) -> bool:
        return True


def access_logger_class(reg: Registry, quiet: bool) -> type[AccessLogger]:
    """An AccessLogger bound to this registry's metrics (aiohttp builds the instance)."""
    return type("RegistryAccessLogger", (AccessLogger,), {"metrics": reg.metrics, "quiet": quiet})


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    reg = request.app[REGISTRY]
    return web.Response(text=reg.metrics.render(), content_type="text/plain",
                        charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})


def make_app(config: Config, storage: Storage | None = None) -> web.Application:
    storage = storage or Storage(Path(config.root), fsync=config.storage.fsync)
    reg = Registry(config=config, storage=storage, uploads=Uploads(storage),
                   auth=authz.Mode.from_config(config.auth, config.access), metrics=Metrics())
    app = web.Application(middlewares=[errors_middleware], client_max_size=1 << 20)
    app[REGISTRY] = reg
    app[ROUTES] = _routes()
    app.router.add_route("GET", "/v2", v2_root)
    app.router.add_route("HEAD", "/v2", v2_root)
    app.router.add_route("GET", "/v2/", v2_root)
    app.router.add_route("HEAD", "/v2/", v2_root)
    app.router.add_route("GET", "/v2/_catalog", catalog)
    app.router.add_route("*", "/v2/{tail:.+}", dispatch)
    app.router.add_route("GET", "/metrics", metrics_handler)
    if reg.auth.kind == "bearer":
        app.router.add_route("GET", reg.auth.token_path, h_token.get_token)
        app.router.add_route("POST", reg.auth.token_path, h_token.post_token)

    async def close_executor(app: web.Application) -> None:
        reg.executor.shutdown(wait=True)

    app.on_cleanup.append(close_executor)
    return app

