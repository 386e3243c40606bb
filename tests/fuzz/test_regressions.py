"""What the fuzzers found, each pinned by its input and the answer berth must give (the
inputs are also kept in tests/fuzz/corpus/<target>/crash-*)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from berth.cli._template import TemplateError, render
from berth.daemon import config
from berth.daemon.config import ConfigError
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


# -- daemon.json (berth/daemon/config.py) -------------------------------------------------------------


def _daemon_json(tmp_path: Path, raw: bytes) -> argparse.Namespace:
    f = tmp_path / "daemon.json"
    f.write_bytes(raw)
    return config.load(["--config-file", str(f)])


def test_daemon_json_bytes_that_are_not_utf8_are_read_as_go_reads_them(tmp_path: Path) -> None:
    """Was a UnicodeDecodeError: Go's json turns them into U+FFFD; a byte order mark picks the
    encoding (dockerd reads UTF-16 files with one)."""
    args = _daemon_json(tmp_path, b'{"labels": ["a=b\xdeh"], "debug": true}')
    assert args.labels == ["a=b\ufffdh"] and args.debug is True
    assert _daemon_json(tmp_path, '\ufeff{"mtu": 1400}'.encode("utf-16-le")).mtu == 1400
    assert _daemon_json(tmp_path, b'\xef\xbb\xbf{"mtu": 1400}').mtu == 1400


@pytest.mark.parametrize("raw, why", [
    (b'{"mtu": 1' + b"1" * 5000 + b"}", "Exceeds the limit"),   # was a ValueError
    (b'{"debug":' * 3000, "exceeded max depth"),                   # was a RecursionError
    (b"[" * 100000 + b"]" * 100000, "exceeded max depth"),
], ids=["long-int", "deep-object", "deep-array"])
def test_daemon_json_too_long_or_too_deep_is_a_config_error(tmp_path: Path, raw: bytes, why: str) -> None:
    with pytest.raises(ConfigError, match=f"unable to configure the Docker daemon with file .*: {why}"):
        _daemon_json(tmp_path, raw)


def test_daemon_json_lone_surrogates_and_nul_bytes(tmp_path: Path) -> None:
    """A lone ``\\ud800`` was kept and failed when encoded (a UnicodeEncodeError from open() or
    from printing the error); a NUL in init-path was a ValueError from os.access."""
    args = _daemon_json(tmp_path, b'{"labels": ["a=\\udfff"], "data-root": "/x\\ud800"}')
    assert args.labels == ["a=\ufffd"] and args.data_root == "/x\ufffd"
    with pytest.raises(ConfigError, match="opening seccomp profile \\(/etc/\ufffd.json\\) failed"):
        _daemon_json(tmp_path, b'{"seccomp-profile": "/etc/\\ud800.json"}')
    with pytest.raises(ConfigError, match='invalid value for "init-path": .* is not an executable file'):
        _daemon_json(tmp_path, b'{"init-path": "/usr/bin/\\u0000tini"}')
