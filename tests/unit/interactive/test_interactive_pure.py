"""Pure pieces of the interactive work: detach keys, the events bus and filters, exec specs."""

from __future__ import annotations

import asyncio

import pytest

from berth.api.events import event_json
from berth.engine.events import Event, Events, matches
from berth.oci import spec as oci
from berth.runtime.container import exec_spec
from berth.runtime.defaults import ANNOTATION_USER
from berth.schema import detachkeys


def test_detach_keys_parse():
    assert detachkeys.parse("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detachkeys.parse("ctrl-x,x") == b"\x18x"
    assert detachkeys.parse("ctrl-@,ctrl-[") == b"\x00\x1b"
    with pytest.raises(ValueError, match="Invalid detach keys"):
        detachkeys.parse("ctrl-1")


def test_detach_matcher_across_chunks_and_false_starts():
    m = detachkeys.Matcher(b"\x10\x11")
    assert m.feed(b"ab\x10") == (b"ab", False)
    assert m.feed(b"c") == (b"\x10c", False)  # not the sequence: the held byte is forwarded
    assert m.feed(b"\x10") == (b"", False)
    assert m.feed(b"\x11rest") == (b"", True)
    assert detachkeys.Matcher(b"").feed(b"\x10\x11") == (b"\x10\x11", False)


def test_events_history_and_subscribers():
    async def go():
        bus = Events(history=3)
        q = bus.subscribe()
        for i in range(5):
            bus.emit("container", "start", f"id{i}", {"name": f"n{i}"})
        assert [e.id for e in bus.history()] == ["id2", "id3", "id4"]
        assert (await q.get()).id == "id0"
        bus.unsubscribe(q)
        bus.emit("image", "tag", "sha256:x", {"name": "busybox:latest"})
        assert q.qsize() == 4
    asyncio.run(go())


def test_event_json_shape():
    ev = Event("container", "die", "abc", {"image": "busybox", "name": "c", "exitCode": "3"}, 1_700_000_000_123_456_789)
    d = event_json(ev)
    assert d["status"] == "die" and d["from"] == "busybox" and d["Actor"]["ID"] == "abc"
    assert d["time"] == 1_700_000_000 and d["timeNano"] == 1_700_000_000_123_456_789 and d["scope"] == "local"
    assert "status" not in event_json(Event("network", "connect", "n"))


def test_event_filters():
    ev = Event("container", "exec_start: sh -c x", "abcdef", {"name": "web", "image": "busybox", "t": "1"})
    assert matches(ev, {"type": ["container"], "event": ["exec_start"]})
    assert matches(ev, {"container": ["web"]}) and matches(ev, {"container": ["abc"]})
    assert matches(ev, {"label": ["t=1"]}) and not matches(ev, {"label": ["t=2"]})
    assert not matches(ev, {"type": ["image"]})
    assert not matches(ev, {"image": ["busybox"]})  # the image filter selects image events


def _spec(user: oci.User, caps: list[str], notes: dict[str, str] | None = None) -> oci.Spec:
    return oci.Spec(process=oci.Process(user=user, args=["sleep"], env=["PATH=/bin", "A=1"], cwd="/w",
                                        capabilities=oci.Capabilities(bounding=caps, effective=caps, permitted=caps)),
                    root=oci.Root(path="/r"), annotations=notes)


def test_exec_spec_env_cwd_tty():
    s = exec_spec(_spec(oci.User(uid=0, gid=0), ["CAP_CHOWN"]), args=["sh"], env=["A=2", "B=3"], cwd="", user="",
                  tty=True, privileged=False)
    assert s.process.args == ["sh"] and s.process.cwd == "/w" and s.process.terminal
    assert s.process.env == ["PATH=/bin", "A=2", "B=3", "TERM=xterm"]
    assert s.process.capabilities.effective == ["CAP_CHOWN"]


def test_exec_spec_users_and_privileged():
    base = _spec(oci.User(uid=0, gid=0), ["CAP_CHOWN"])
    s = exec_spec(base, args=["id"], env=[], cwd="", user="65534", tty=False, privileged=False)
    assert s.process.user.uid == 65534 and s.annotations[ANNOTATION_USER] == "65534"
    assert s.process.capabilities.effective is None  # Docker: a numeric non-root user has none
    s = exec_spec(base, args=["id"], env=[], cwd="", user="1:2", tty=False, privileged=False)
    assert (s.process.user.uid, s.process.user.gid) == (1, 2) and ANNOTATION_USER not in (s.annotations or {})
    s = exec_spec(base, args=["id"], env=[], cwd="", user="nobody", tty=False, privileged=False)
    assert s.annotations[ANNOTATION_USER] == "nobody" and s.process.capabilities.effective == ["CAP_CHOWN"]
    s = exec_spec(base, args=["id"], env=[], cwd="", user="", tty=False, privileged=True)
    assert "CAP_SYS_ADMIN" in s.process.capabilities.effective and len(s.process.capabilities.bounding) > 30
