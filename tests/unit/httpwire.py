"""Raw HTTP/1.1 on a socket, as the API tests read it back: how many whole responses a byte
string holds."""

from __future__ import annotations


def complete(buf: bytes) -> int:
    """Whole responses (all carry Content-Length) at the start of ``buf``."""
    n, pos = 0, 0
    while (end := buf.find(b"\r\n\r\n", pos)) >= 0:
        head = buf[pos:end].decode("latin-1").lower()
        length = int(head.split("content-length: ")[1].split("\r\n")[0]) if "content-length: " in head else 0
        if len(buf) < end + 4 + length:
            break
        pos, n = end + 4 + length, n + 1
    return n
