"""SPDY/3.1 framing against the draft's frame layouts and known bytes from other implementations
(Chromium's SpdyFramer tests: compressed SYN_STREAM frames), not only against itself."""

from __future__ import annotations

import zlib

import pytest

from berth.cri import spdy


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


# Chromium's spdy_framer_test.cc, SPDY/3 SYN_STREAM frames, stream 1, priority 4, headers
# bar: foo and foo: bar, compressed with the SPDY/3 dictionary by another zlib setup than ours
CHROMIUM_SYN_STREAMS = [
    h("80030001 00000027 00000001 00000000 8000 38eae3c6a7c202e50e50c24b4a04e50be6b4fc7c240a2808000000ffff"),
    h("80030001 00000037 00000001 00000000 8000 38eae3c6a7c202e50e50c24b4a04e50b668000 4acbcf070820109596"
      "9f0fa200022829b108208000000000ffff"),
]


def test_dictionary_is_the_spdy3_one() -> None:
    # 1423 bytes, and its Adler-32 is the DICTID every SPDY/3 header block carries (e3c6a7c2)
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


@pytest.mark.parametrize("wire", CHROMIUM_SYN_STREAMS)
def test_decodes_chromium_syn_stream(wire: bytes) -> None:
    assert spdy.Codec().feed(wire) == [spdy.SynStream(1, [("bar", "foo"), ("foo", "bar")], 0, 0, 4, 0)]


def test_syn_stream_layout_and_round_trip() -> None:
    f = spdy.SynStream(1, [("bar", "foo"), ("foo", "bar")], priority=4)
    wire = spdy.Codec().encode(f)
    # control bit + version 3, type 1, flags 0, length; stream 1, associated 0, priority 4 << 5, slot 0
    assert wire[:4] == h("80030001") and int.from_bytes(wire[4:8], "big") == len(wire) - 8
    assert wire[8:18] == h("00000001 00000000 8000")
    # a zlib stream with a preset dictionary (FDICT) whose DICTID is the SPDY/3 dictionary's
    assert wire[19] & 0x20 and wire[20:24] == h("e3c6a7c2")
    assert wire.endswith(h("0000ffff"))  # each block ends on a sync flush
    assert spdy.Codec().feed(wire) == [f]


def test_fixed_frames_match_the_draft() -> None:
    c = spdy.Codec()
    cases = [
        (spdy.Ping(1), "80030006 00000004 00000001"),
        (spdy.RstStream(1, spdy.CANCEL), "80030003 00000008 00000001 00000005"),
        (spdy.GoAway(7, spdy.GOAWAY_OK), "80030007 00000008 00000007 00000000"),
        (spdy.WindowUpdate(3, 0x1000), "80030009 00000008 00000003 00001000"),
        (spdy.Settings([(0, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 65536)]),
         "80030004 0000000c 00000001 00000007 00010000"),
        (spdy.Data(5, b"hi", spdy.FLAG_FIN), "00000005 01000002 6869"),
        (spdy.Data(2**31 - 1, b""), "7fffffff 00000000"),
    ]
    for frame, wire in cases:
        assert c.encode(frame) == h(wire), frame
        assert c.feed(h(wire)) == [frame]


def test_header_block_layout() -> None:
    block = spdy.pack_headers([("streamType", "error"), ("port", "80"), ("port", "81")])
    assert block == (h("00000002 0000000a") + b"streamtype" + h("00000005") + b"error" +
                     h("00000004") + b"port" + h("00000005") + b"80\x0081")
    assert spdy.unpack_headers(block) == [("streamtype", "error"), ("port", "80"), ("port", "81")]
    with pytest.raises(spdy.SpdyError):
        spdy.unpack_headers(h("00000001 00000009") + b"short")


def test_compression_is_one_stream_per_direction() -> None:
    sender, receiver = spdy.Codec(), spdy.Codec()
    first = sender.encode(spdy.SynStream(1, [("streamtype", "error")]))
    second = sender.encode(spdy.SynStream(3, [("streamtype", "stdout")]))
    assert second[18:20] != first[18:20]  # no new zlib header: the second block continues the stream
    assert [f.headers for f in receiver.feed(first + second)] == [[("streamtype", "error")], [("streamtype", "stdout")]]
    with pytest.raises(spdy.SpdyError):  # the second block alone is not a zlib stream
        spdy.Codec().feed(second)


def test_incremental_feed_and_unknowns() -> None:
    c, wire = spdy.Codec(), b"".join(spdy.Codec().encode(f) for f in (spdy.Ping(3), spdy.Data(1, b"abc")))
    got = [f for i in range(len(wire)) for f in c.feed(wire[i:i + 1])]
    assert got == [spdy.Ping(3), spdy.Data(1, b"abc")]
    assert c.feed(h("8003000a 00000002 abcd")) == []  # an unknown control type is skipped
    with pytest.raises(spdy.SpdyError):
        c.feed(h("80020006 00000004 00000001"))  # SPDY/2
    with pytest.raises(spdy.SpdyError):
        spdy.Codec().feed(h("80030006 00000002 0000"))  # a PING of 2 bytes
    assert spdy.header([("streamtype", "data"), ("port", "80")], "Port") == "80"
