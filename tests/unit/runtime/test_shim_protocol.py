"""The shim protocol across versions: protocol-1 lines (the plain JSON dicts berthd and the shim
exchanged up to commit 45c91bb, recorded here byte for byte as they were written) decode into
the versioned Structs, and what the new side writes reads the same to the old side's parsing.
tests/integration/test_shim_upgrade.py runs a real old berthd and its shims against the new one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import msgspec
import pytest

from berth.runtime.shim import protocol as p

ROOT = Path(__file__).resolve().parents[3]
PROTOCOL_1 = "45c91bb"  # the last commit whose shim spoke unversioned dicts

# berthd -> shim, as protocol 1 wrote them (json.dumps: ", " and ": " separators), and the
# message each is
OLD_REQUESTS: list[tuple[bytes, p.Request]] = [
    (b'{"op": "start"}', p.Start()),
    (b'{"op": "kill", "signal": 9}', p.Kill(signal=9)),
    (b'{"op": "kill"}', p.Kill(signal=15)),
    (b'{"op": "resize", "h": 24, "w": 80}', p.Resize(h=24, w=80)),
    (b'{"op": "resize", "exec": "e1", "h": 5, "w": 7}', p.Resize(exec="e1", h=5, w=7)),
    (b'{"op": "attach", "stdin": true, "stdout": true, "stderr": false}', p.Attach(stdin=True, stdout=True)),
    (b'{"op":"wait"}', p.Wait()),
    (b'{"op": "state"}', p.State()),
    (b'{"op": "exec", "id": "e1", "args": ["sh", "-c", "echo hi"], "env": ["A=1"], "cwd": "/tmp", '
     b'"user": "nobody", "tty": true, "privileged": false, "stdin": true}',
     p.Exec(id="e1", args=["sh", "-c", "echo hi"], env=["A=1"], cwd="/tmp", user="nobody", tty=True, stdin=True)),
]

# shim -> berthd, as protocol 1 wrote them (json.JSONEncoder with "," and ":")
OLD_REPLIES: list[tuple[bytes, p.Message]] = [
    (b'{"ok":true}', p.Reply(ok=True)),
    (b'{"error":"kill: No such process"}', p.Reply(error="kill: No such process")),
    (b'{"pid":77,"status":"running"}', p.StateReply(pid=77, status="running")),
    (b'{"pid":4242}', p.ExecReply(pid=4242)),
    (b'{"error":"container is not running"}', p.ExecReply(error="container is not running")),
    (b'{"error":"exec: \\"nope\\": executable file not found in $PATH","exit_code":126}',
     p.ExecReply(error='exec: "nope": executable file not found in $PATH', exit_code=126)),
    (b'{"exit_code":137,"oom_killed":true,"finished_at":"2026-01-02T03:04:05.000000006Z","error":""}',
     p.ExitStatus(exit_code=137, oom_killed=True, finished_at="2026-01-02T03:04:05.000000006Z")),
    (b'{"pid":100,"shim_pid":99}', p.SpawnReply(pid=100, shim_pid=99)),
    (b'{"error":"bad spawn request: Object missing required field `id`"}',
     p.SpawnReply(error="bad spawn request: Object missing required field `id`")),
    (b'{"exit_code":3}', p.ExecExit(exit_code=3)),
]


@pytest.mark.parametrize("line,msg", OLD_REQUESTS, ids=[m.__class__.__name__ for _, m in OLD_REQUESTS])
def test_protocol_1_requests_decode_as_version_1(line: bytes, msg: p.Request):
    got = p.decode_request(line)
    assert got == msg and isinstance(got, p.Request) and got.v == 1


# What protocol 1's readers took for a missing key (the old shim's req.get(key, default) and
# bool(req.get(key)), the old berthd's reply.get("exit_code", 126) and its ExitStatus struct).
OLD_READER_DEFAULTS: dict[type, dict[str, object]] = {
    p.Kill: {"signal": 15},
    p.Attach: {"stdin": False, "stdout": False, "stderr": False},
    p.Resize: {"h": 0, "w": 0},
    p.Exec: {"env": [], "cwd": "", "user": "", "tty": False, "privileged": False, "stdin": False},
    p.ExecReply: {"exit_code": 126},
    p.ExitStatus: {"oom_killed": False, "finished_at": "", "error": ""},
}


def _old_reader_sees(line: bytes, kind: type) -> dict[str, object]:
    d = json.loads(line)
    d.pop("v", None)
    return {**OLD_READER_DEFAULTS.get(kind, {}), **d}


@pytest.mark.parametrize("line,msg", OLD_REQUESTS, ids=[m.__class__.__name__ for _, m in OLD_REQUESTS])
def test_new_requests_read_as_protocol_1_plus_v(line: bytes, msg: p.Request):
    """The old shim json.loads the line and reads keys (resize's "exec" by presence): the new
    line gives it the same values, and ``v``."""
    new = p.encode(msg)
    assert json.loads(new)["v"] == p.VERSION
    assert _old_reader_sees(new, type(msg)) == _old_reader_sees(line, type(msg))


@pytest.mark.parametrize("line,msg", OLD_REPLIES, ids=[m.__class__.__name__ for _, m in OLD_REPLIES])
def test_protocol_1_replies_decode_both_ways(line: bytes, msg: p.Message):
    got = p.decode(line, type(msg))
    assert got == msg and got.v == 1
    again = p.encode(got)  # what a new shim writes for it: an old berthd reads the same values
    assert json.loads(again)["v"] == p.VERSION
    assert _old_reader_sees(again, type(msg)) == _old_reader_sees(line, type(msg))


def test_unknown_fields_are_ignored_and_missing_ones_defaulted():
    req = p.decode_request(b'{"op":"exec","v":9,"id":"x","args":["true"],"future":{"a":1}}')
    assert req == p.Exec(id="x", args=["true"], v=9)
    assert p.decode(b'{"v":7,"ok":true,"lease":"x"}', p.Reply) == p.Reply(ok=True, v=7)
    assert p.decode(b'{"exit_code":1,"cpu_ns":5}', p.ExitStatus) == p.ExitStatus(exit_code=1)


def test_bad_requests_get_an_error_not_a_crash():
    assert p.decode_request(b'{"op":"migrate"}') == "unknown op 'migrate'"
    assert p.decode_request(b'[1,2]') == "unknown op None"
    err = p.decode_request(b'{"op":"kill","signal":"TERM"}')
    assert isinstance(err, str) and err.startswith("bad kill request")
    with pytest.raises(msgspec.DecodeError):
        p.decode_request(b"not json")


PROTOCOL_2 = "6dae0dc"  # the last commit whose shims speak protocol 2


def test_reopen_log_is_protocol_3_and_an_older_shim_answers_an_error():
    line = p.encode(p.ReopenLog())
    assert json.loads(line) == {"op": "reopen_log", "v": 3}
    assert p.decode_request(line) == p.ReopenLog(v=3)
    old = _old_protocol(PROTOCOL_2)  # a shim of an older berthd: an error reply, which berthd reports
    assert old.decode_request(line) == "unknown op 'reopen_log'"


def _old_protocol(commit: str = "") -> types.ModuleType:
    """berth/runtime/shim/protocol.py as of ``commit`` (PROTOCOL_1 by default), loaded from git."""
    commit = commit or PROTOCOL_1
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:berth/runtime/shim/protocol.py"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"no git history with {commit}")
    mod = types.ModuleType(f"old_shim_protocol_{commit}")
    sys.modules[mod.__name__] = mod  # msgspec resolves the module's own names through it
    try:
        exec(compile(src, "old_protocol.py", "exec"), mod.__dict__)
    finally:
        del sys.modules[mod.__name__]
    return mod


def test_spawn_requests_and_exit_records_cross_with_the_old_structs():
    old = _old_protocol()
    new_req = p.SpawnRequest(id="c1", bundle="/b", socket="/s", log="", exit_file="/e", tty=True,
                             console_size=[24, 80], log_max_size=1024, log_max_file=3, log_compress=True)
    as_old = msgspec.json.decode(p.encode(new_req), type=old.SpawnRequest)  # an old fork server reads it
    added = {"v", "runtime_path", "runtime_root", "runtime_args", "remote_log", "cri_log", "exit_sync",
             "attach"}  # since protocol 1, at their defaults here
    assert msgspec.structs.asdict(as_old) == {k: v for k, v in msgspec.structs.asdict(new_req).items() if k not in added}
    back = p.decode(msgspec.json.encode(as_old), p.SpawnRequest)  # a new fork server, an old berthd
    assert back == new_req and back.v == 1

    status = p.ExitStatus(exit_code=0, finished_at="2026-01-02T03:04:05Z")  # oom_killed/error: defaults
    assert msgspec.json.decode(p.encode(status), type=old.ExitStatus) == \
        old.ExitStatus(exit_code=0, finished_at="2026-01-02T03:04:05Z")
    assert p.decode(msgspec.json.encode(old.ExitStatus(exit_code=2, error="x")), p.ExitStatus) == \
        p.ExitStatus(exit_code=2, error="x")
