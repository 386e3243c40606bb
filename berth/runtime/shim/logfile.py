"""The json-file records the shim appends to a container's log, a whole read at a time.

One record per line, Docker's json-file shape (users and tools read the file):

    {"log":"hello\\n","stream":"stdout","time":"2025-01-02T03:04:05.123456789Z"}

``encode`` turns everything one read of the container's pipe brought (whole lines, or one long
line without its newline) into all of its records at once: the lines of a read share its time,
and where the text has no backslash and no NUL the whole read is escaped by one C call (each
newline is swapped for a NUL first, whose escape ``\\u0000`` then cannot come from anything else)
and the records are joined around it, with no Python work per line. Any other text is escaped
line by line.

    encode(b"a\\nb\\n", "stdout", T) ==
        b'{"log":"a\\\\n","stream":"stdout","time":"T"}\\n{"log":"b\\\\n","stream":"stdout","time":"T"}\\n'

A CRI container (one the kubelet made) is also logged in the kubelet's format, one line per
line, ``F`` for a full line and ``P`` for the part of a long one that came without its newline:

    encode_cri(b"a\\nlong", "stdout", T) == b"T stdout F a\\nT stdout P long\\n"
"""

from __future__ import annotations

from json.encoder import encode_basestring


def encode(data: bytes, stream: str, now: str) -> bytes:
    """The records of ``data``: lines each ending in a newline, except perhaps the last (then
    logged without one, as a long line's first part is)."""
    tail = '","stream":"%s","time":"%s"}\n' % (stream, now)
    text = data.decode("utf-8", "replace")
    ends = text.endswith("\n")
    if ends:
        text = text[:-1]
    if "\\" not in text and "\x00" not in text:
        body = encode_basestring(text.replace("\n", "\x00"))[1:-1]
        out = '{"log":"' + body.replace("\\u0000", "\\n" + tail + '{"log":"') + ("\\n" if ends else "") + tail
        return out.encode()
    lines = text.split("\n")
    last = lines.pop()
    recs = ['{"log":' + encode_basestring(line + "\n")[:-1] + tail for line in lines]
    recs.append('{"log":' + encode_basestring(last + "\n" if ends else last)[:-1] + tail)
    return "".join(recs).encode()


def cut(blob: bytes, room: int) -> int:
    """Where to split ``blob`` (whole records) so the first part is the fewest records that fill
    ``room`` bytes: the record crossing it stays in the first part, as dockerd rotates after
    the write that reached max-size. len(blob) if blob does not fill it."""
    if room > len(blob):
        return len(blob)
    return blob.find(b"\n", max(room, 1) - 1) + 1


def encode_cri(data: bytes, stream: str, now: str) -> bytes:
    """The CRI log lines of ``data`` (whole lines, or one long line's part without its newline)."""
    ends = data.endswith(b"\n")
    lines = (data[:-1] if ends else data).split(b"\n")
    head = f"{now} {stream} ".encode()
    out = [head + b"F " + line + b"\n" for line in lines[:-1]]
    out.append(head + (b"F " if ends else b"P ") + lines[-1] + b"\n")
    return b"".join(out)
