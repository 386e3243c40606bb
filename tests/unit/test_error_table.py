"""Every error kind berth raises maps to an HTTP status in the one table (api/errors.py)."""

from __future__ import annotations

import importlib
import pkgutil

import berth
from berth import errors
from berth.api.errors import error_response, status_of


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out.add(sub)
        out |= _all_subclasses(sub)
    return out


def test_every_error_subclass_has_a_status() -> None:
    for m in pkgutil.walk_packages(berth.__path__, "berth."):
        if m.name.startswith(("berth.cli", "berth.client")):
            continue
        try:
            importlib.import_module(m.name)
        except ImportError:
            continue
    # The registry server answers in the OCI distribution spec's own table (registry/server/
    # errors.py, tested there); a registry client failure that is not more specific is a 500,
    # as dockerd answers unreachable registries.
    own_table = ("berth.registry.server.",)
    deliberate_500 = {"berth.registry.client.session.RegistryError"}
    missing = [f"{c.__module__}.{c.__qualname__}" for c in _all_subclasses(errors.BerthError)
               if not c.__module__.startswith(own_table)
               and f"{c.__module__}.{c.__qualname__}" not in deliberate_500
               and status_of(c.__new__(c)) is None]
    assert not missing, f"no HTTP status for {missing}"


def test_error_body_is_dockers_shape() -> None:
    resp = error_response(None, errors.NotFound("No such container: x"))
    assert resp.status == 404
    assert resp.body == b'{"message":"No such container: x"}\n'
    assert error_response(None, errors.Conflict("c")).status == 409
    assert error_response(None, errors.InvalidArgument("i")).status == 400
    assert error_response(None, errors.NotModified("n")).status == 304
    assert error_response(None, RuntimeError("boom")).status == 500
