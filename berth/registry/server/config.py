"""The server's configuration: command-line flags plus an optional TOML file (``--config``).

Example (every key optional)::

    [storage]
    delete = true                 # allow DELETE of blobs, manifests and tags
    fsync = false                 # fsync blobs and metadata before they become visible
    upload_max_age = 604800       # seconds before an abandoned upload is swept
    upload_sweep_interval = 3600
    manifest_max_size = 4194304

    [auth]                        # no [auth] table: anyone may do anything
    htpasswd = "/etc/berth/htpasswd"   # bcrypt entries, as `htpasswd -B` writes them
    realm = "berth-registry"           # Basic realm

    [auth.token]                  # present: Bearer tokens, issued at path on this server
    realm = ""                    # the URL clients fetch tokens from; "" = this server's path
    path = "/auth/token"
    service = "berth-registry"
    issuer = "berth-registry"
    key_file = ""                 # HMAC key for signing; "" = a random key per start
    expiration = 300

    [[access]]                    # no rules: every authenticated account may do everything
    account = "alice"             # fnmatch pattern; "*" any account; "anonymous" no credentials
    repository = "alice/*"        # fnmatch pattern over repository names
    actions = ["pull", "push", "delete"]

    [log]
    access = "-"                  # access log: "-" stderr, a path, or "" for none

Kill -9 safety needs only the write-to-temporary-then-rename order, which is always used;
``fsync`` adds durability across power loss, at a cost per write (the Go registry does not
fsync either).
"""

from __future__ import annotations

from pathlib import Path

import msgspec


class StorageConfig(msgspec.Struct, forbid_unknown_fields=True):
    delete: bool = True
    fsync: bool = False
    upload_max_age: float = 7 * 24 * 3600.0
    upload_sweep_interval: float = 3600.0
    manifest_max_size: int = 4 * 1024 * 1024


class TokenConfig(msgspec.Struct, forbid_unknown_fields=True):
    realm: str = ""
    path: str = "/auth/token"
    service: str = "berth-registry"
    issuer: str = "berth-registry"
    key_file: str = ""
    expiration: int = 300


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True):
    htpasswd: str = ""
    realm: str = "berth-registry"
    token: TokenConfig | None = None


class AccessRule(msgspec.Struct, forbid_unknown_fields=True):
    account: str
    repository: str
    actions: list[str]


class LogConfig(msgspec.Struct, forbid_unknown_fields=True):
    access: str = "-"


class Config(msgspec.Struct, forbid_unknown_fields=True):
    addr: str = "127.0.0.1:5000"
    root: str = "/var/lib/berth-registry"
    read_only: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    auth: AuthConfig | None = None
    access: list[AccessRule] = []
    log: LogConfig = msgspec.field(default_factory=LogConfig)


def load(path: str | None) -> Config:
    """Read the TOML file at path (or the defaults when None).

    Raises:
        ValueError: the file is not valid TOML or has unknown or mistyped keys.
    """
    if not path:
        return Config()
    try:
        return msgspec.toml.decode(Path(path).read_bytes(), type=Config)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"config {path}: {exc}") from None
