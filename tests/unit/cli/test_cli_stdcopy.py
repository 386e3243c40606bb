"""Demultiplexing docker's 8-byte framed streams."""

import pytest

from berth.client.stdcopy import Demuxer, StreamError, copy, frame


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
