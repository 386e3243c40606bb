"""Pull, push and login: the image store on one side, a registry on the other. Distribution
is built once by daemon/; it picks the endpoints and hands each transfer to its module:

    pull      distribution_pull   (manifest, config, layers in parallel; mirrors first)
    push      distribution_push   (layers in parallel or cross-mounted, then the manifests)

Transfers run in threads (the registry client is synchronous); each thread posts its progress
through ``Progress`` (``engine.progress``), which is safe to call from any thread.
"""

from __future__ import annotations

from typing import Callable

from berth.engine.distribution_pull import Puller
from berth.engine.distribution_push import Pusher
from berth.engine.progress import Progress
from berth.errors import PermissionDenied, Unavailable
from berth.image.store import Image, ImageStore
from berth.registry.client.auth import Credentials as Credentials  # re-exported: the API builds them
from berth.registry.client.auth import decode_registry_auth
from berth.registry.client.options import Options


def credentials(registry_auth: str | None) -> Credentials:
    """The credentials an ``X-Registry-Auth`` header carries (base64url JSON; none if absent).
    Raises InvalidArgument."""
    return decode_registry_auth(registry_auth)


class Distribution:
    def __init__(self, store: ImageStore, opts: Options | None = None):
        self.store = store
        self.opts = opts or Options()
        self.on_event: Callable[[str, str, dict[str, str]], None] = lambda *a: None
        self.puller = Puller(store, self.opts, self._event)
        self.pusher = Pusher(store, self.opts, self._event)

    def _event(self, action: str, image_id: str, attrs: dict[str, str]) -> None:
        self.on_event(action, image_id, attrs)  # daemon/ sets on_event after construction

    # -- pull, push -------------------------------------------------------------------------

    async def pull(self, name: str, tag: str, creds: Credentials | None, platform: str | None,
                   out: Progress) -> Image:
        return await self.puller.pull(name, tag, creds, platform, out)

    async def push(self, name: str, tag: str, creds: Credentials | None, out: Progress) -> None:
        await self.pusher.push(name, tag, creds, out)

    # -- login ------------------------------------------------------------------------------

    def login(self, creds: Credentials) -> str:
        """Check the credentials against the registry; returns an identity token (none yet: "")."""
        server = creds.serveraddress or "docker.io"
        host = server.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
        if host in ("index.docker.io", "docker.io", ""):
            host = "registry-1.docker.io"
        from berth.registry.client.session import Registry, RegistryDenied, RegistryError
        reg = Registry(host, creds, self.opts)
        try:
            reg.ping()
        except RegistryDenied:
            raise LoginFailed(f"login attempt to {reg.base()}/v2/ failed with status: 401 Unauthorized") from None
        except RegistryError as e:
            raise Unavailable(f"Get \"{reg.base() if reg.scheme else 'https://' + host}/v2/\": {e}") from None
        finally:
            reg.close()
        return ""


class LoginFailed(PermissionDenied):
    pass

