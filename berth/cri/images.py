"""The CRI's ImageService over the engine's image store: the same images ``docker images``
lists, pulled by the same puller (auth included)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import Any

from cri_api.v1 import api_pb2 as pb

from berth.engine.distribution import Distribution, credentials
from berth.engine.images import Images
from berth.engine.progress import Progress
from berth.errors import InvalidArgument, NotFound


class ImageStore:
    def __init__(self, images: Images, distribution: Distribution, root: str):
        self.images = images
        self.distribution = distribution
        self.root = root  # the data root: ImageFsInfo's mountpoint

    def _image(self, img: Any) -> Any:
        user = img.config.config.User if img.config.config else ""
        name, _, _ = user.partition(":")
        uid = pb.Int64Value(value=int(name)) if name.isdigit() else None
        tags = self.images.store.tags_of(img.id)
        return pb.Image(id=img.id, repo_tags=tags, repo_digests=self.images.store.repo_digests_of(img.id),
                        size=img.size, uid=uid, username="" if name.isdigit() else name,
                        spec=pb.ImageSpec(image=img.id))

    def list(self, f: Any) -> list[Any]:
        out = []
        for img in self.images.list():
            if f is not None and f.image.image:
                try:
                    if self.images.resolve(f.image.image).id != img.id:
                        continue
                except NotFound:
                    return []
            out.append(self._image(img))
        return out

    def status(self, ref: str) -> Any:
        """The image, or None (the CRI answers an unknown image with an empty status)."""
        if not ref:
            raise InvalidArgument("image spec must name an image")
        try:
            return self._image(self.images.resolve(ref))
        except NotFound:
            return None

    async def pull(self, ref: str, auth: Any) -> str:
        if not ref:
            raise InvalidArgument("image spec must name an image")
        creds = credentials(_registry_auth(auth)) if auth is not None else None
        progress = Progress(asyncio.get_running_loop(), lambda msg: None)
        img = await self.distribution.pull(ref, "", creds, None, progress)
        return img.id

    def remove(self, ref: str) -> None:
        if not ref:
            raise InvalidArgument("image spec must name an image")
        try:
            self.images.remove(ref, force=True)
        except NotFound:
            pass  # the CRI's remove is idempotent

    def fs_info(self) -> Any:
        layers = self.images.store.used_layers()
        used = 0
        for chain in layers:
            layer = self.images.store.layer(chain)
            used += layer.size if layer is not None else 0
        usage = pb.FilesystemUsage(timestamp=time.time_ns(),
                                   fs_id=pb.FilesystemIdentifier(mountpoint=os.path.join(self.root, "image")),
                                   used_bytes=pb.UInt64Value(value=used),
                                   inodes_used=pb.UInt64Value(value=len(layers)))
        return pb.ImageFsInfoResponse(image_filesystems=[usage], container_filesystems=[usage])


def _registry_auth(auth: Any) -> str:
    """The CRI's AuthConfig as Docker's X-Registry-Auth (base64url JSON)."""
    user, password = auth.username, auth.password
    if auth.auth and not user:
        user, _, password = base64.b64decode(auth.auth).decode().partition(":")
    body = {"username": user, "password": password, "serveraddress": auth.server_address,
            "identitytoken": auth.identity_token, "registrytoken": auth.registry_token}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
