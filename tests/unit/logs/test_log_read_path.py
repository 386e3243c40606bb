"""The json-file log path without a daemon: the shim's record encoder (runtime.shim.logfile)
writes real files, engine.logs reads them back; every answer is checked against a plain
json.loads of each line, the way Docker's own reader decodes the file."""

from __future__ import annotations

import asyncio
import gzip
import json
import struct
from pathlib import Path

import pytest

from berth.engine import logscan
from berth.engine.logs import LogReader
from berth.runtime.shim import logfile

PAYLOADS = [b"line %d the quick brown fox\n" % i for i in range(3000)]
ODD = [b'{"level":"info","msg":"quoted"}\n', b"tab\there\n", b"back\\slash\n", b"\x1b[31mred\x1b[0m\n",
       "caf\u00e9 \u2603\n".encode(), b"nul\x00byte\n", b"\n", b"ends with backslash n \\n\n"]


def _time(i: int) -> str:
    return "2025-01-01T00:%02d:%02d.%09dZ" % (i // 3600 % 60, i // 60 % 60, i % 60 * 1000)


def write_log(path: Path, payloads: list[bytes], start: int = 0) -> list[str]:
    """One shim read per payload (each its own time); the lines as written."""
    with open(path, "ab") as f:
        for i, p in enumerate(payloads):
            f.write(logfile.encode(p, "stderr" if (start + i) % 7 == 0 else "stdout", _time(start + i)))
    return path.read_text().splitlines(keepends=True)


def expected(lines: list[str], stdout=True, stderr=True, since="", until="", timestamps=False, tail=None,
             raw=False) -> bytes:
    out = []
    for line in lines:
        rec = json.loads(line)
        stream = 1 if rec["stream"] == "stdout" else 2
        if (stream == 1 and not stdout) or (stream == 2 and not stderr):
            continue
        if (since and rec["time"] < since) or (until and rec["time"] > until):
            continue
        data = rec["log"].encode()
        if timestamps:
            data = rec["time"].encode() + b" " + data
        out.append(data if raw else struct.pack(">BxxxL", stream, len(data)) + data)
    if tail is not None:
        out = out[-tail:] if tail else []
    return b"".join(out)


def read(path: Path, stdout=True, stderr=True, since=None, until=None, timestamps=False, tail=None,
         raw=False) -> list[bytes]:
    async def go() -> list[bytes]:
        r = LogReader(path, stdout, stderr, since, until, timestamps, tail)
        return [c async for c in r.chunks(False, lambda: False, raw)]
    return asyncio.run(go())


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "c-json.log"
    payloads = list(PAYLOADS)
    for i, odd in enumerate(ODD):
        payloads.insert(i * 300 + 5, odd)
    return path, write_log(path, payloads)


def test_encoder_writes_one_docker_record_per_line():
    data = b"".join(ODD)
    recs = [json.loads(x) for x in logfile.encode(data, "stdout", "T").splitlines()]
    assert [r["log"].encode() for r in recs] == ODD[:5] + [b"nul\x00byte\n", b"\n", b"ends with backslash n \\n\n"]
    assert all(list(r) == ["log", "stream", "time"] and r["stream"] == "stdout" and r["time"] == "T" for r in recs)
    assert json.loads(logfile.encode(b"no newline yet", "stderr", "T"))["log"] == "no newline yet"


def test_rotation_cut_keeps_the_crossing_record_in_the_full_file():
    blob = logfile.encode(b"aa\nbb\ncc\n", "stdout", "T")
    first = len(blob) // 3
    assert logfile.cut(blob, 1) == first
    assert logfile.cut(blob, first) == first
    assert logfile.cut(blob, first + 1) == 2 * first
    assert logfile.cut(blob, 10 * len(blob)) == len(blob)


@pytest.mark.parametrize("opts", [
    {}, {"raw": True}, {"stdout": False}, {"stderr": False}, {"timestamps": True}, {"tail": 0}, {"tail": 1},
    {"tail": 100}, {"tail": 2500, "stderr": False}, {"tail": 10 ** 6}, {"tail": 50, "timestamps": True},
])
def test_read_matches_a_line_by_line_json_decode(log, opts):
    path, lines = log
    assert b"".join(read(path, **opts)) == expected(lines, **opts)


def test_since_and_until_compare_to_the_nanosecond(log):
    path, lines = log
    t = json.loads(lines[1800])["time"]  # "2025-01-01T00:00:SS.mmm000000Z"
    secs = "1735689600"
    assert b"".join(read(path, since=t)) == expected(lines, since=t)
    after = t[:-2] + "1Z"  # one nanosecond later: that line is left out
    assert b"".join(read(path, since=after)) == expected(lines, since=after)
    assert b"".join(read(path, since=after)) != b"".join(read(path, since=t))
    assert b"".join(read(path, until=t)) == expected(lines, until=t)
    assert b"".join(read(path, since=secs + ".5")) == expected(lines, since="2025-01-01T00:00:00.500000000Z")
    assert b"".join(read(path, since=t, tail=3)) == expected(lines, since=t, tail=3)


def test_history_is_sent_in_large_chunks_not_per_line(log):
    path, lines = log
    chunks = read(path)
    assert len(lines) > 3000 and len(chunks) <= 2


def test_rotated_and_compressed_files_are_read_oldest_first(tmp_path):
    path = tmp_path / "c-json.log"
    all_lines: list[str] = []
    for n, suffix in ((3, ".gz"), (2, ""), (1, "")):
        part = tmp_path / "part"
        part.unlink(missing_ok=True)
        lines = write_log(part, [b"rotated %d line %d\n" % (n, i) for i in range(200)] + ODD[:2], len(all_lines))
        target = Path(f"{path}.{n}{suffix}")
        if suffix:
            target.write_bytes(gzip.compress(part.read_bytes()))
        else:
            part.rename(target)
        all_lines += lines
    all_lines += write_log(path, [b"live %d\n" % i for i in range(50)], len(all_lines))
    assert b"".join(read(path)) == expected(all_lines)
    for tail in (10, 60, 300, 700):
        assert b"".join(read(path, tail=tail)) == expected(all_lines, tail=tail)
    t = json.loads(all_lines[300])["time"]
    assert b"".join(read(path, since=t)) == expected(all_lines, since=t)


def test_a_line_being_written_is_left_for_the_follow(tmp_path):
    path = tmp_path / "c-json.log"
    lines = write_log(path, [b"a\n", b"b\n"])
    with open(path, "ab") as f:
        f.write(b'{"log":"half')
    assert b"".join(read(path)) == expected(lines)
    assert b"".join(read(path, tail=5)) == expected(lines)


def test_lines_written_by_dockerd_are_read_too(tmp_path):
    path = tmp_path / "c-json.log"
    path.write_bytes(b'{"log":"hi \\u003cb\\u003e\\n","stream":"stdout","attrs":{"a":"b"},"time":"2025-01-01T00:00:01.5Z"}\n'
                     b'{"log":"two\\n","stream":"stderr","time":"2025-01-01T00:00:02Z"}\n'
                     b'not json\n')
    assert b"".join(read(path, raw=True, timestamps=True)) == (
        b"2025-01-01T00:00:01.500000000Z hi <b>\n2025-01-01T00:00:02.000000000Z two\n")
    assert b"".join(read(path, raw=True, since="2025-01-01T00:00:01.6Z")) == b"two\n"


def test_plain_blocks_are_recognised_and_escapes_are_not():
    plain = logfile.encode(b"a\nb\n", "stdout", _time(1))
    assert logscan.is_plain(plain)
    assert not logscan.is_plain(plain + logfile.encode(b'"q"\n', "stdout", _time(2)))
    assert not logscan.is_plain(plain + logfile.encode(b"partial", "stdout", _time(2)))
    assert not logscan.is_plain(plain[:-5])


def test_follow_reads_new_lines_across_a_rotation(tmp_path):
    path = tmp_path / "c-json.log"
    lines = write_log(path, [b"before %d\n" % i for i in range(3)])
    state = {"alive": True}

    async def writer() -> None:
        await asyncio.sleep(0.05)
        with open(path, "ab") as f:
            f.write(b"".join(logfile.encode(b"new %d\n" % i, "stdout", _time(10 + i)) for i in range(3)))
            f.write(b'{"log":"spl')  # the shim's write, seen half done
        await asyncio.sleep(0.05)
        with open(path, "ab") as f:
            f.write(b'it\\n","stream":"stdout","time":"%s"}\n' % _time(13).encode())
        await asyncio.sleep(0.05)
        path.rename(f"{path}.1")
        path.write_bytes(logfile.encode(b"rotated 0\nrotated 1\n", "stderr", _time(14)))
        await asyncio.sleep(0.1)
        state["alive"] = False

    async def go() -> bytes:
        r = LogReader(path, True, True, None, None, False, 2)
        task = asyncio.create_task(writer())
        out = b"".join([c async for c in r.chunks(True, lambda: state["alive"], False, poll=0.01)])
        await task
        return out

    out = asyncio.run(go())
    everything = lines + Path(f"{path}.1").read_text().splitlines(keepends=True)[3:] + \
        path.read_text().splitlines(keepends=True)
    assert out == expected(lines, tail=2) + expected(everything[3:])
    assert out.count(b"rotated") == 2 and b"split\n" in out


def test_times_past_year_9999_are_taken_as_dockerd_takes_them(log):
    """Found by the API fuzzer (issue 16): ?until=72057594037927936 was a 500 (gmtime's
    EOVERFLOW); Go's times reach that far, so dockerd sends every line, and none for since."""
    path, lines = log
    far = "72057594037927936"
    assert logscan.time_key(far) == b"9999-12-31T23:59:59.999999999Z"
    assert b"".join(read(path, until=far)) == expected(lines)
    assert b"".join(read(path, since=far)) == b""
