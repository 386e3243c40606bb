"""The token endpoint (Docker's token authentication): GET with Basic credentials or none,
and POST with OAuth2's password grant, as ``docker login`` sends."""

from __future__ import annotations

import asyncio
import datetime

from aiohttp import web

from berth.registry.server import auth as authz
from berth.registry.server.context import ACCOUNT, REGISTRY, Registry, error_response
from berth.registry.server.errors import Unauthorized


async def _check(reg: Registry, user: str, password: str) -> bool:
    htpasswd = reg.auth.htpasswd
    if htpasswd is None:
        return False
    if htpasswd.cached(user, password):
        return True
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(reg.executor, htpasswd.check, user, password)


def _grant(reg: Registry, account: str, scopes: list[str]) -> list[authz.Scope]:
    out = []
    for text in scopes:
        for part in text.split(" "):
            scope = authz.parse_scope(part)
            granted = reg.auth.rules.grant(account, scope) if scope else None
            if granted is not None:
                out.append(granted)
    return out


def _issue(reg: Registry, account: str, granted: list[authz.Scope]) -> dict[str, object]:
    assert reg.auth.tokens is not None
    token, issued = reg.auth.tokens.issue(account, granted)
    when = datetime.datetime.fromtimestamp(issued, datetime.timezone.utc)
    return {"token": token, "access_token": token, "expires_in": reg.auth.tokens.expiration,
            "issued_at": when.strftime("%Y-%m-%dT%H:%M:%SZ")}


async def get_token(request: web.Request) -> web.StreamResponse:
    reg = request.app[REGISTRY]
    header = request.headers.get("Authorization", "")
    account = authz.ANONYMOUS
    if header:
        creds = authz.parse_basic(header)
        if creds is None or not await _check(reg, *creds):
            return error_response(Unauthorized(
                "invalid username or password", challenge=f'Basic realm="{reg.auth.realm}"'))
        account = creds[0]
    request[ACCOUNT] = account
    return web.json_response(_issue(reg, account, _grant(reg, account,
                                                          request.query.getall("scope", []))))


async def post_token(request: web.Request) -> web.StreamResponse:
    reg = request.app[REGISTRY]
    form = await request.post()
    grant_type = str(form.get("grant_type", ""))
    if grant_type != "password":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    user, password = str(form.get("username", "")), str(form.get("password", ""))
    if not await _check(reg, user, password):
        return web.json_response({"error": "invalid_grant"}, status=401)
    request[ACCOUNT] = user
    scopes = [str(s) for s in form.getall("scope", [])]
    granted = _grant(reg, user, scopes)
    body = _issue(reg, user, granted)
    body["scope"] = " ".join(str(s) for s in granted)
    return web.json_response(body)
