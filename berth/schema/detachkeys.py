"""Detach key sequences (``ctrl-p,ctrl-q``): parsing and a streaming matcher (pure).

Docker's rules (moby/term ToBytes): a comma-separated list of single characters or
``ctrl-<x>`` where x is a letter, ``@``, ``[``, ``\\``, ``]``, ``^`` or ``_``.
"""

from __future__ import annotations

DEFAULT = "ctrl-p,ctrl-q"
_CTRL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse(keys: str) -> bytes:
    """Raises ValueError: ``Invalid detach keys (ctrl-1) provided``."""
    out = bytearray()
    for part in keys.split(","):
        p = part.strip()
        low = p.lower()
        if len(p) > 1 and low.startswith("ctrl-") and len(p) == 6:
            ch = low[5]
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            if ch in _CTRL:
                out.append(_CTRL[ch])
                continue
        elif len(p) == 1:
            out.append(ord(p))
            continue
        raise ValueError(f"Invalid detach keys ({keys}) provided")
    return bytes(out)


class Matcher:
    """Feed stdin chunks; get back the bytes to forward, and whether the sequence was typed.
    Bytes that might begin the sequence are held until the next chunk decides."""

    def __init__(self, seq: bytes) -> None:
        self.seq = seq
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if not self.seq:
            return data, False
        out = bytearray()
        for b in data:
            cand = self.held + bytes((b,))
            if self.seq.startswith(cand):
                self.held = cand
                if cand == self.seq:
                    self.held = b""
                    return bytes(out), True
                continue
            # no longer a prefix: forward what was held (it may restart the sequence)
            out += self.held
            self.held = b""
            if self.seq.startswith(bytes((b,))):
                self.held = bytes((b,))
            else:
                out.append(b)
        return bytes(out), False
