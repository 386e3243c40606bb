"""What the fuzzers found, each pinned by its input and the answer berth must give (the
inputs are also kept in tests/fuzz/corpus/<target>/crash-*)."""

from __future__ import annotations

import pytest

from berth.cli._template import TemplateError, render
from berth.errors import InvalidArgument
from berth.oci.image import decode_config
from berth.oci.manifest import decode_index, kind_of
from tests.fuzz.targets import _http_server, _reader, _run_async, _Writer


def _answers(raw: bytes) -> bytes:
    async def go() -> bytes:
        server, w = _http_server(), _Writer()
        reader = _reader(raw)
        while await server._one(reader, w):
            pass
        return bytes(w.out)
    return _run_async(go())


@pytest.mark.parametrize("body", [
    b"4\r\nabcd\r",                  # the CRLF after a chunk cut short (was a 500: IncompleteReadError)
    b"4\r\nabcdXY0\r\n\r\n",         # not a CRLF after the chunk (was skipped unread)
    b"-1\r\nabc",                    # a negative size (read the connection to its end)
    b"0x3\r\nabc\r\n0\r\n\r\n",      # Python's int() takes 0x, Go does not
    b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
    b"1" + b";" * 70000 + b"\r\nx\r\n0\r\n\r\n",  # a size line past the reader's limit (was a 500: ValueError)
])
def test_a_malformed_chunked_body_is_a_400(body: bytes) -> None:
    out = _answers(b"POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]


def test_a_good_chunked_body_still_reads() -> None:
    out = _answers(b"POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n"
                   b"0\r\nTrailer: 1\r\n\r\nGET /_ping HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and b'{"n":13}' in out and out.endswith(b"OK"), out


@pytest.mark.parametrize("length", [b"-1", b"5_0", b"+5", b"abc", b"\xd9\xa5"])
def test_a_bad_content_length_is_a_400_and_the_connection_closes(length: bytes) -> None:
    out = _answers(b"POST /body HTTP/1.1\r\nContent-Length: " + length + b"\r\n\r\nGET /_ping HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in out and b"OK" not in out, out


def test_manifests_and_configs_with_invalid_utf8_are_invalid_arguments() -> None:
    body = b'{"schemaVersion":2,"manifests":[{"mediaType":"a","digest":"sha\xff","size":1}]}'
    with pytest.raises(InvalidArgument):
        kind_of(body, None)
    with pytest.raises(InvalidArgument):
        decode_index(body)
    with pytest.raises(InvalidArgument, match="invalid image config"):
        decode_config(b'{"architecture":"amd\xff4"}')
    with pytest.raises(InvalidArgument, match="invalid image config"):
        decode_config(b'{"rootfs":{"type":"layers","diff_ids":[1]}}')


@pytest.mark.parametrize("source", ["{{truncate .ID pad}}", "{{.ID.upper 1}}", "{{.ID.split 1 2 3}}"])
def test_template_functions_called_wrongly_are_template_errors(source: str) -> None:
    with pytest.raises(TemplateError, match="error calling"):
        render(source, {"ID": "abc"})
