"""What a request handler sees: the ``Registry`` (config, storage, uploads, auth mode,
metrics), the request keys set on the way in, the error response and the credential check.

The handler modules (``h_*.py``) and ``app.py`` (which routes to them) both import this module,
so the graph runs one way: app -> h_* -> context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web

from berth.registry.server import auth as authz
from berth.registry.server.config import Config
from berth.registry.server.errors import Denied, RegistryError, Unauthorized, status_of
from berth.registry.server.metrics import Metrics
from berth.registry.server.storage import Storage
from berth.registry.server.uploads import Uploads

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")


@dataclass
class Registry:
    """Everything a handler needs; built once by ``make_app``."""

    config: Config
    storage: Storage
    uploads: Uploads
    auth: authz.Mode
    metrics: Metrics
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(4, thread_name_prefix="registry-io"))

    @property
    def read_only(self) -> bool:
        return self.config.read_only


REGISTRY = web.AppKey("registry", Registry)
ACCOUNT = web.RequestKey("account", str)  # who made the request, for the access log
GRANTED = web.RequestKey("granted", frozenset)  # actions granted on the request's repository

Handler = Callable[[web.Request, Registry, dict[str, str]], Awaitable[web.StreamResponse]]


# -- errors ---------------------------------------------------------------------------------


def error_response(err: RegistryError) -> web.Response:
    body = {"errors": [{"code": err.code, "message": err.message, "detail": err.detail}]}
    resp = web.json_response(body, status=status_of(err))
    if err.challenge:
        resp.headers["WWW-Authenticate"] = err.challenge
    resp.headers[API_VERSION[0]] = API_VERSION[1]
    return resp


# -- auth -----------------------------------------------------------------------------------


def challenge(reg: Registry, request: web.Request, scope: authz.Scope | None,
               error: str = "") -> str:
    mode = reg.auth
    if mode.kind == "basic":
        return f'Basic realm="{mode.realm}"'
    realm = mode.token_realm or f"{request.scheme}://{request.host}{mode.token_path}"
    assert mode.tokens is not None
    value = f'Bearer realm="{realm}",service="{mode.tokens.service}"'
    if scope is not None:
        value += f',scope="{scope}"'
    if error:
        value += f',error="{error}"'
    return value


def _needed(scope: authz.Scope | None) -> object:
    if scope is None:
        return None
    return [{"Type": scope.type, "Name": scope.name, "Action": a} for a in sorted(scope.actions)]


async def authenticate(request: web.Request, reg: Registry,
                       scope: authz.Scope | None) -> tuple[str, frozenset[str]]:
    """Check the request's credentials against scope; return (account, actions granted on the
    scope's repository).

    Raises:
        Unauthorized: no, wrong or expired credentials.
        Denied: an account the access rules do not allow (Basic), or a token without the
            scope (Bearer).
    """
    mode = reg.auth
    wanted = scope.actions if scope else frozenset()
    if mode.kind == "none":
        return "", frozenset(authz.ACTIONS)
    header = request.headers.get("Authorization", "")
    if mode.kind == "basic":
        account = await _basic_account(request, reg, header)
        request[ACCOUNT] = account or ""
        if account is None:
            raise Unauthorized(challenge=challenge(reg, request, scope), detail=_needed(scope))
        granted = reg.auth.rules.allowed(account, scope.name) if scope else frozenset()
        if not wanted <= granted:
            if account == authz.ANONYMOUS:
                raise Unauthorized(challenge=challenge(reg, request, scope),
                                   detail=_needed(scope))
            raise Denied(detail=_needed(scope))
        return account, granted
    scheme, _, token = header.partition(" ")
    claims = mode.tokens.verify(token.strip()) if mode.tokens and scheme.lower() == "bearer" else None
    if claims is None:
        error = "invalid_token" if header else ""
        raise Unauthorized(challenge=challenge(reg, request, scope, error), detail=_needed(scope))
    account, scopes = claims
    request[ACCOUNT] = account
    granted = frozenset()
    if scope is not None:
        for s in scopes:
            if s.type == scope.type and s.name == scope.name:
                granted |= s.actions
        if not wanted <= granted and "*" not in granted:
            # RFC 6750 section 3.1: a valid token without the scope is a 403, with a challenge
            # naming the scope so that a client may fetch a better token
            raise Denied(challenge=challenge(reg, request, scope, "insufficient_scope"),
                         detail=_needed(scope))
    return account, granted


async def _basic_account(request: web.Request, reg: Registry, header: str) -> str | None:
    """The account of Basic credentials; ANONYMOUS when none were sent; None when wrong."""
    if not header:
        return authz.ANONYMOUS
    creds = authz.parse_basic(header)
    htpasswd = reg.auth.htpasswd
    if creds is None or htpasswd is None:
        return None
    user, password = creds
    if not user and not password:  # what some clients send after a Basic challenge
        return authz.ANONYMOUS
    if htpasswd.cached(user, password):
        return user
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(reg.executor, htpasswd.check, user, password)
    return user if ok else None
