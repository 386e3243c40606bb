"""Docker's registry-credential encodings: the ``X-Registry-Auth`` header and the ``auth``
field of a client's config.json.

One implementation for the client (which writes the header and reads config.json) and the
registry client in berthd (which reads the header). Pure and stdlib-only: layering treats it
as a leaf that every package may use, like ``schema.stdcopy``.
"""

from __future__ import annotations

import base64


def b64decode(s: str) -> bytes:
    """Base64 as Docker's clients write it: URL-safe or standard, padded or not."""
    s = s.strip()
    pad = "=" * (-len(s) % 4)
    try:
        return base64.urlsafe_b64decode(s + pad)
    except ValueError:
        return base64.b64decode(s + pad)
