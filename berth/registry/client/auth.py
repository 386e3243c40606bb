"""Registry credentials on the daemon's side: the ``X-Registry-Auth`` header decoded into
Credentials, and ``WWW-Authenticate`` challenges (pure, stdlib only). The docker CLI's
``~/.docker/config.json`` is the client's: ``berth.client.credentials``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from berth.errors import InvalidArgument
from berth.schema.registryauth import b64decode


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identitytoken: str = ""
    registrytoken: str = ""
    serveraddress: str = ""

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identitytoken or self.registrytoken)



def decode_registry_auth(header: str | None) -> Credentials:
    """The ``X-Registry-Auth`` header: base64url of ``{"username", "password", ...}``."""
    if not header:
        return Credentials()
    try:
        doc = json.loads(b64decode(header) or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("invalid X-Registry-Auth header") from None
    if not isinstance(doc, dict):
        return Credentials()
    return Credentials(str(doc.get("username") or ""), str(doc.get("password") or ""),
                       str(doc.get("identitytoken") or ""), str(doc.get("registrytoken") or ""),
                       str(doc.get("serveraddress") or ""))


_PARAM = re.compile(r'([a-zA-Z_][a-zA-Z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in _PARAM.finditer(rest)}
    return scheme.lower(), params
