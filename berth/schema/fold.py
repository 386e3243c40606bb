"""Request bodies decoded as Go's encoding/json does: field names match case-insensitively.

docker-py sends ``{"detachKeys": ...}`` in an exec create body, and dockerd accepts it as
``DetachKeys``. msgspec is case-sensitive, so top-level keys are folded onto the struct's own
field names first (a later key overrides an earlier one, as in Go)::

    decode_folded(b'{"detachKeys":"ctrl-x"}', ExecCreate).DetachKeys == "ctrl-x"
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)


def fold_keys(doc: dict[str, Any], typ: type[msgspec.Struct]) -> dict[str, Any]:
    fields = {f.lower(): f for f in typ.__struct_fields__}
    out: dict[str, Any] = {}
    for key, value in doc.items():
        out[key if key in typ.__struct_fields__ else fields.get(key.lower(), key)] = value
    return out


def decode_folded(body: bytes, typ: type[T]) -> T:
    """Raises msgspec.DecodeError (bad JSON) or msgspec.ValidationError (bad types)."""
    doc = msgspec.json.decode(body)
    if not isinstance(doc, dict):
        return msgspec.convert(doc, typ)  # raises ValidationError with msgspec's wording
    return msgspec.convert(fold_keys(doc, typ), typ)
