"""Demultiplexing docker's 8-byte framed streams."""

import pytest

from berth.schema.stdcopy import Demuxer, StreamError, copy, frame


def test_wire_example() -> None:
    data = b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n"
    assert list(Demuxer().feed(data)) == [(1, b"hello\n")]


def test_split_across_reads_and_interleaved() -> None:
    blob = frame(2, b"err\n") + frame(1, b"out\n") + frame(1, b"")
    chunks = [blob[i:i + 3] for i in range(0, len(blob), 3)] + [b""]
    out, err = [], []
    copy(iter(chunks).__next__, out.append, err.append)
    assert b"".join(out) == b"out\n"
    assert err == [b"err\n"]


def test_large_frame() -> None:
    payload = b"x" * 200_000
    got = list(Demuxer().feed(frame(1, payload)))
    assert got == [(1, payload)]


def test_stdin_stream_goes_to_stdout() -> None:
    assert list(Demuxer().feed(frame(0, b"a"))) == [(1, b"a")]


def test_systemerr_raises() -> None:
    with pytest.raises(StreamError, match="boom"):
        copy(iter([frame(3, b"boom"), b""]).__next__, print, print)


def test_bad_header() -> None:
    with pytest.raises(StreamError):
        list(Demuxer().feed(bytes([9, 0, 0, 0, 0, 0, 0, 1]) + b"x"))


def test_relay_mode_keeps_stream_numbers() -> None:
    """The API's websocket relay strips headers without the client's rules."""
    from berth.schema.stdcopy import parse_header

    data = frame(0, b"in") + frame(7, b"odd") + frame(3, b"exit")
    assert list(Demuxer(strict=False).feed(data)) == [(0, b"in"), (7, b"odd"), (3, b"exit")]
    assert parse_header(frame(2, b"x" * 70000)[:8]) == (2, 70000)


def test_one_framing_implementation() -> None:
    """Frame headers are built and parsed only in berth/schema/stdcopy.py. The engine's two
    readers of the shim's exec stream, and the log scanner's packer (new, under edit by another
    step: it can use ``stdcopy.header``, a precompiled struct too), are left for the engine's
    restructuring (issue 11)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "berth"
    pattern = re.compile(r">BxxxL|bytes\(\(stream, 0, 0, 0|bytes\(\[stream, 0, 0, 0|"
                         r"from_bytes\((?:buf|head|self\._buf)\[4:")
    pending = {"engine/exec.py", "engine/build_support.py", "engine/logscan.py"}
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                   if pattern.search(p.read_text()) and p.name != "stdcopy.py")
    assert found == [] or set(found) <= pending, found
