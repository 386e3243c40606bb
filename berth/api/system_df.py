"""``GET /system/df``: disk usage of images, containers, volumes and the build cache, by API
version and ``type``."""

from __future__ import annotations

import asyncio
import time

from berth.api import images_shape
from berth.api.app import App, Routes
from berth.api.containers_shape import summary as container_summary
from berth.api.http import Request, Response
from berth.api.shape import json_response
from berth.api.volumes import usage_json
from berth.errors import InvalidArgument

_KEYS = {"container": ["Containers"], "image": ["LayersSize", "Images"], "volume": ["Volumes"],
         "build-cache": ["BuildCache"]}


def _images(app: App, req: Request) -> dict[str, object]:
    du = app.image_files.disk_usage()
    now = time.time()
    images = []
    for u in du.images:
        d = images_shape.summary(u.record, req)
        d["SharedSize"] = u.shared_size
        d["Containers"] = u.containers
        images.append(d)
    return {"LayersSize": du.layers_size, "Images": images,
            "Containers": [container_summary(app, c, now, True) for c in du.containers]}


async def system_df(app: App, req: Request) -> Response:
    out = _images(app, req)
    vols = await asyncio.to_thread(app.volumes.disk_usage)
    out["Volumes"] = [usage_json(app.volumes, u) for u in vols]
    out["BuildCache"] = rows = app.build_admin.rows()
    if not req.version_at_least("1.42"):
        out["BuilderSize"] = sum(int(r["Size"]) for r in rows or [])
    types = [v for k, v in req.query_list if k == "type"] if req.version_at_least("1.42") else []
    for t in types:
        if t not in _KEYS:
            raise InvalidArgument(f"unknown object type: {t}")
    if types:  # only the asked-for object types are computed and returned
        wanted = {k for t in types for k in _KEYS[t]}
        out = {k: v for k, v in out.items() if k in wanted}
    return json_response(out)


ROUTES: Routes = [("GET", "/system/df", system_df)]
