"""Who may do what: htpasswd accounts (bcrypt), access rules, and Bearer tokens.

Three modes, from the config: none (no ``[auth]``: everyone may do everything), Basic (an
htpasswd file; every request carries the password), and Bearer (Docker Hub's token flow: the
registry answers 401 with ``WWW-Authenticate: Bearer realm=..,service=..,scope=..``; the client
asks the token endpoint, with Basic credentials or none, for a token naming the scopes it needs;
the endpoint grants the part of them the access rules allow, signed with an HMAC key and
expiring; the client sends ``Authorization: Bearer <token>``).

A scope is ``repository:<name>:<actions>`` with actions among pull, push, delete (``*`` for
all); the catalog is ``registry:catalog:*``.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from berth.registry.server.config import AccessRule, AuthConfig

ACTIONS = ("pull", "push", "delete")
ANONYMOUS = ""


@dataclass(frozen=True)
class Scope:
    type: str       # "repository" or "registry"
    name: str       # repository name, or "catalog"
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(a for a in (*ACTIONS, '*') if a in self.actions)}"


def parse_scope(text: str) -> Scope | None:
    """``repository:library/busybox:pull,push`` -> Scope; None when malformed."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    return Scope(kind, name, frozenset(a for a in actions.split(",") if a))


class Htpasswd:
    """An htpasswd file of bcrypt entries (``htpasswd -B``), re-read when it changes.

    Checking a bcrypt hash costs milliseconds on purpose; a successful check is remembered
    (keyed by an HMAC of the password under a per-process key) so a client that sends Basic
    credentials on every request pays it once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1.0
        self._users: dict[str, bytes] = {}
        self._ok: dict[tuple[str, bytes], bytes] = {}
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()

    def _reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._users, self._mtime = {}, -1.0
            return
        if mtime == self._mtime:
            return
        users = {}
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or ":" not in line:
                continue
            user, _, hashed = line.partition(":")
            users[user] = hashed.encode()
        with self._lock:
            self._users, self._mtime, self._ok = users, mtime, {}

    def check(self, user: str, password: str) -> bool:
        """Whether user:password matches (may block for a bcrypt check: call off the loop)."""
        import bcrypt

        self._reload()
        hashed = self._users.get(user)
        if hashed is None or not hashed.startswith((b"$2y$", b"$2a$", b"$2b$")):
            return False
        mac = hmac.new(self._key, password.encode(), hashlib.sha256).digest()
        if self._ok.get((user, mac)) == hashed:
            return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                self._ok[(user, mac)] = hashed
        return ok

    def cached(self, user: str, password: str) -> bool:
        """Whether this exact pair was already checked true (never blocks)."""
        self._reload()
        hashed = self._users.get(user)
        mac = hmac.new(self._key, password.encode(), hashlib.sha256).digest()
        return hashed is not None and self._ok.get((user, mac)) == hashed


class Rules:
    """The ``[[access]]`` rules. With none, an authenticated account may do everything and an
    anonymous one nothing; with some, an action is allowed when any rule allows it."""

    def __init__(self, rules: list[AccessRule]) -> None:
        self.rules = rules

    def allowed(self, account: str, repo: str) -> frozenset[str]:
        if not self.rules:
            return frozenset(ACTIONS) if account != ANONYMOUS else frozenset()
        out: set[str] = set()
        for rule in self.rules:
            if not _account_matches(rule.account, account):
                continue
            if fnmatch.fnmatchcase(repo, rule.repository):
                out.update(ACTIONS if "*" in rule.actions else rule.actions)
        return frozenset(a for a in out if a in ACTIONS)

    def grant(self, account: str, scope: Scope) -> Scope | None:
        """The part of scope this account may have, or None."""
        if scope.type == "registry" and scope.name == "catalog":
            ok = account != ANONYMOUS or any(r.account == "anonymous" for r in self.rules)
            return Scope("registry", "catalog", frozenset({"*"})) if ok else None
        if scope.type != "repository":
            return None
        wanted = set(ACTIONS) if "*" in scope.actions else set(scope.actions)
        granted = wanted & self.allowed(account, scope.name)
        return Scope(scope.type, scope.name, frozenset(granted)) if granted else None


def _account_matches(pattern: str, account: str) -> bool:
    if account == ANONYMOUS:
        return pattern == "anonymous"
    return pattern != "anonymous" and fnmatch.fnmatchcase(account, pattern)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenIssuer:
    """Signs and verifies JWTs (HS256) carrying Docker's ``access`` claim."""

    issuer: str
    service: str
    key: bytes
    expiration: int = 300
    leeway: int = 60
    _kid: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self._kid = hashlib.sha256(self.key).hexdigest()[:16]

    def issue(self, account: str, scopes: list[Scope], now: float | None = None) -> tuple[str, int]:
        """Return (token, issued-at epoch seconds)."""
        now = int(time.time() if now is None else now)
        header = {"alg": "HS256", "typ": "JWT", "kid": self._kid}
        claims = {
            "iss": self.issuer, "sub": account, "aud": self.service,
            "exp": now + self.expiration, "nbf": now - 1, "iat": now,
            "jti": secrets.token_hex(16),
            "access": [{"type": s.type, "name": s.name, "actions": sorted(s.actions)}
                       for s in scopes],
        }
        signing = (_b64(json.dumps(header, separators=(",", ":")).encode()) + "."
                   + _b64(json.dumps(claims, separators=(",", ":")).encode()))
        sig = hmac.new(self.key, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64(sig)}", now

    def verify(self, token: str, now: float | None = None) -> tuple[str, list[Scope]] | None:
        """(account, granted scopes) of a valid token; None when forged, expired or foreign."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            sig = _unb64(parts[2])
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, binascii.Error):
            return None
        expected = hmac.new(self.key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(sig, expected) or header.get("alg") != "HS256":
            return None
        now = time.time() if now is None else now
        try:
            if claims["iss"] != self.issuer or claims["aud"] != self.service:
                return None
            if now > float(claims["exp"]) + self.leeway or now < float(claims["nbf"]) - self.leeway:
                return None
            scopes = [Scope(str(a["type"]), str(a["name"]), frozenset(map(str, a["actions"])))
                      for a in claims.get("access") or []]
            return str(claims.get("sub") or ""), scopes
        except (KeyError, TypeError, ValueError):
            return None


def load_key(path: str) -> bytes:
    """The HMAC key from key_file, or a fresh random key (tokens then die with the process)."""
    if not path:
        return os.urandom(32)
    return Path(path).read_bytes().strip()


def parse_basic(header: str) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic ...`` value."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


@dataclass(frozen=True)
class Mode:
    """The configured auth: ``kind`` is none, basic or bearer."""

    kind: str
    htpasswd: Htpasswd | None
    rules: Rules
    realm: str
    tokens: TokenIssuer | None
    token_path: str
    token_realm: str

    @classmethod
    def from_config(cls, auth: AuthConfig | None, rules: list[AccessRule]) -> "Mode":
        if auth is None:
            return cls("none", None, Rules(rules), "", None, "", "")
        htpasswd = Htpasswd(Path(auth.htpasswd)) if auth.htpasswd else None
        if auth.token is None:
            if htpasswd is None:
                raise ValueError("config [auth] needs htpasswd (Basic) or [auth.token] (Bearer)")
            return cls("basic", htpasswd, Rules(rules), auth.realm, None, "", "")
        t = auth.token
        issuer = TokenIssuer(t.issuer, t.service, load_key(t.key_file), t.expiration)
        return cls("bearer", htpasswd, Rules(rules), auth.realm, issuer, t.path, t.realm)
