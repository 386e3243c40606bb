"""Pure parts of the registry server: grammar, manifest checks, auth, storage layout, uploads,
gc, locks, metrics, config, and the CLI staying lazy."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from berth.registry.server import errors, manifests
from berth.registry.server.auth import Htpasswd, Rules, Scope, TokenIssuer, parse_basic, parse_scope
from berth.registry.server.config import AccessRule, load
from berth.registry.server.gc import collect
from berth.registry.server.locks import hold
from berth.registry.server.metrics import Metrics
from berth.registry.server.names import check_name, check_reference, parse_digest
from berth.registry.server.storage import Storage
from berth.registry.server.uploads import Uploads
from berth.errors import Conflict

REPO_ROOT = Path(__file__).resolve().parents[3]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "library/busybox", "a-b/c__d/e.f", "a0/b1/c2", "x--y"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a/", "/a", "a//b", "a/-b", "a_", "_a", "a/_b",
                                  "a.-b", "a" * 256, "a/../b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(errors.NameInvalid):
        check_name(name)


def test_digests_and_references() -> None:
    good = sha(b"x")
    assert parse_digest(good) == ("sha256", good[7:])
    for bad in ("sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64, "nocolon", good.upper()):
        with pytest.raises(errors.DigestInvalid):
            parse_digest(bad)
    assert check_reference("v1.0") == (False, "v1.0")
    assert check_reference(good) == (True, good)
    with pytest.raises(errors.ManifestInvalid):
        check_reference("-bad")
    with pytest.raises(errors.ManifestInvalid):
        check_reference("x" * 129)


def test_every_error_has_a_status() -> None:
    def subclasses(cls: type) -> list[type]:
        return [cls, *(s for c in cls.__subclasses__() for s in subclasses(c))]

    for cls in subclasses(errors.RegistryError)[1:]:
        assert errors.status_of(cls()) != 500, cls
    assert errors.status_of(errors.RangeInvalid()) == 416
    assert errors.status_of(errors.TooLarge()) == 413


# -- manifests --------------------------------------------------------------------------------


def _manifest(**extra: object) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": manifests.OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.example.config",
                                  "digest": sha(b"c"), "size": 1},
                       "layers": [{"mediaType": "x", "digest": sha(b"l"), "size": 1}],
                       **extra}).encode()


def test_manifest_check() -> None:
    c = manifests.check(_manifest(), manifests.OCI_MANIFEST)
    assert c.media_type == manifests.OCI_MANIFEST and c.digest == sha(_manifest())
    assert [d.digest for d in c.blobs] == [sha(b"c"), sha(b"l")]
    assert c.artifact_type == "application/vnd.example.config"  # from config.mediaType
    c = manifests.check(_manifest(artifactType="a/b"), "application/json")
    assert c.artifact_type == "a/b"
    ref = json.loads(c.referrer_descriptor(10))
    assert ref == {"digest": c.digest, "size": 10, "mediaType": manifests.OCI_MANIFEST,
                   "artifactType": "a/b"}
    no_type = json.loads(_manifest())
    del no_type["mediaType"]
    assert manifests.check(json.dumps(no_type).encode(), "").media_type == manifests.OCI_MANIFEST
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": manifests.OCI_MANIFEST, "digest": sha(b"m"), "size": 3}]}).encode()
    c = manifests.check(index, "")
    assert c.media_type == manifests.OCI_INDEX and [d.digest for d in c.children] == [sha(b"m")]


@pytest.mark.parametrize("body,ctype", [
    (b"{", manifests.OCI_MANIFEST),
    (b"[]", manifests.OCI_MANIFEST),
    (_manifest(), manifests.DOCKER_MANIFEST),
    (_manifest(), manifests.DOCKER_V1[0]),
    (_manifest(), manifests.OCI_INDEX),
    (json.dumps({"schemaVersion": 2, "mediaType": manifests.OCI_MANIFEST}).encode(), ""),
    (json.dumps({"schemaVersion": 2, "config": {"digest": "bad", "size": 1}}).encode(), ""),
    (json.dumps({"schemaVersion": 2, "mediaType": manifests.DOCKER_MANIFEST,
                 "artifactType": "x", "config": {"digest": sha(b""), "size": 0}}).encode(), ""),
])
def test_manifest_invalid(body: bytes, ctype: str) -> None:
    with pytest.raises((errors.ManifestInvalid, errors.DigestInvalid)):
        manifests.check(body, ctype)


def test_accepts() -> None:
    assert manifests.accepts([], manifests.OCI_MANIFEST)
    assert manifests.accepts(["*/*"], manifests.OCI_MANIFEST)
    assert manifests.accepts([f"{manifests.DOCKER_MANIFEST}, {manifests.OCI_MANIFEST};q=0.5"],
                             manifests.OCI_MANIFEST)
    assert not manifests.accepts([manifests.DOCKER_MANIFEST], manifests.OCI_MANIFEST)


# -- auth -------------------------------------------------------------------------------------


def test_scopes_and_rules() -> None:
    s = parse_scope("repository:a/b:pull,push")
    assert s == Scope("repository", "a/b", frozenset({"pull", "push"}))
    assert str(s) == "repository:a/b:pull,push"
    assert parse_scope("garbage") is None
    rules = Rules([AccessRule("alice", "*", ["*"]), AccessRule("b*", "team/*", ["pull"]),
                   AccessRule("anonymous", "pub/*", ["pull"])])
    assert rules.allowed("alice", "x") == {"pull", "push", "delete"}
    assert rules.allowed("bob", "team/x") == {"pull"}
    assert rules.allowed("bob", "other") == frozenset()
    assert rules.allowed("", "pub/x") == {"pull"}
    assert rules.allowed("", "team/x") == frozenset()
    assert rules.grant("bob", parse_scope("repository:team/x:pull,push")) == \
        Scope("repository", "team/x", frozenset({"pull"}))
    assert rules.grant("bob", parse_scope("repository:other:pull")) is None
    assert Rules([]).allowed("anyone", "x") == {"pull", "push", "delete"}
    assert Rules([]).allowed("", "x") == frozenset()


def test_tokens() -> None:
    issuer = TokenIssuer("iss", "svc", b"k" * 32, expiration=60)
    token, now = issuer.issue("alice", [Scope("repository", "a", frozenset({"pull"}))])
    account, scopes = issuer.verify(token)  # type: ignore[misc]
    assert account == "alice" and scopes == [Scope("repository", "a", frozenset({"pull"}))]
    assert issuer.verify(token, now=now + 60 + 61) is None       # expired (past the leeway)
    assert TokenIssuer("iss", "svc", b"j" * 32).verify(token) is None   # another key
    assert TokenIssuer("iss", "other", b"k" * 32).verify(token) is None  # another audience
    head, body, sig = token.split(".")
    assert issuer.verify(f"{head}.{body}x.{sig}") is None
    assert issuer.verify("a.b") is None


def test_htpasswd_bcrypt(tmp_path: Path) -> None:
    import bcrypt

    path = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    path.write_text(f"# comment\nalice:{hashed}\nbob:$apr1$notbcrypt\n")
    h = Htpasswd(path)
    assert h.check("alice", "pw") and h.cached("alice", "pw")
    assert not h.check("alice", "nope") and not h.check("bob", "x") and not h.check("eve", "pw")
    path.write_text("")  # removing the account takes effect (re-read on change)
    os.utime(path, (1, 1))
    assert not h.check("alice", "pw") and not h.cached("alice", "pw")
    assert parse_basic("Basic YWxpY2U6cHc=") == ("alice", "pw")
    assert parse_basic("Basic ***") is None and parse_basic("Bearer x") is None


# -- storage, uploads, gc ---------------------------------------------------------------------


def _push(st: Storage, up: Uploads, repo: str, data: bytes) -> str:
    u = up.create(repo)
    w = u.open_writer()
    w.write(data)
    w.close()
    up.finish(u, sha(data))
    return sha(data)


def _manifest_for(st: Storage, repo: str, blobs: list[bytes], tag: str | None,
                  subject: str | None = None) -> str:
    body = {"schemaVersion": 2, "mediaType": manifests.OCI_MANIFEST,
            "config": {"mediaType": "c", "digest": sha(blobs[0]), "size": len(blobs[0])},
            "layers": [{"mediaType": "l", "digest": sha(b), "size": len(b)} for b in blobs[1:]]}
    if subject:
        body["subject"] = {"mediaType": manifests.OCI_MANIFEST, "digest": subject, "size": 1}
    data = json.dumps(body).encode()
    c = manifests.check(data, manifests.OCI_MANIFEST)
    st.put_manifest(repo, c.digest, data, c.media_type, tag=tag, subject=subject,
                    referrer=c.referrer_descriptor(len(data)))
    return c.digest


def test_storage_layout_and_referrers(tmp_path: Path) -> None:
    st = Storage(tmp_path)
    ups = Uploads(st)
    cfg, layer = _push(st, ups, "a/b", b"config"), _push(st, ups, "a/b", b"layer")
    assert st.blob_path(cfg).stat().st_mode & 0o222 == 0  # read-only
    d = _manifest_for(st, "a/b", [b"config", b"layer"], "v1")
    assert st.resolve_tag("a/b", "v1") == d and st.repositories() == ["a/b"]
    r = _manifest_for(st, "a/b", [b"config"], None, subject=d)
    assert [json.loads(x)["digest"] for x in st.referrers("a/b", d)] == [r]
    # a referrer entry whose revision is missing (a crash between the two writes) is skipped
    st._revision("a/b", r).unlink()
    assert st.referrers("a/b", d) == []
    assert layer in st.layer_links("a/b")


def test_upload_survives_restart_and_rehashes(tmp_path: Path) -> None:
    st = Storage(tmp_path)
    u = Uploads(st).create("r")
    w = u.open_writer()
    w.write(b"first half ")
    w.close()
    fresh = Uploads(st)  # a new process: no running hash in memory
    u2 = fresh.get("r", u.uuid)
    assert u2.offset == len(b"first half ")
    w = u2.open_writer()
    w.write(b"second half")
    w.close()
    with pytest.raises(errors.DigestInvalid):
        fresh.finish(u2, sha(b"not it"))
    with pytest.raises(errors.BlobUploadUnknown):  # a wrong digest cancels the upload
        fresh.get("r", u.uuid)
    u3 = fresh.create("r")
    w = u3.open_writer()
    w.write(b"data")
    w.close()
    with pytest.raises(errors.BlobUploadUnknown):
        fresh.get("other", u3.uuid)
    fresh2 = Uploads(st)
    fresh2.finish(fresh2.get("r", u3.uuid), sha(b"data"))
    assert st.read_blob(sha(b"data")) == b"data" and st.linked("r", sha(b"data"))


def test_gc(tmp_path: Path) -> None:
    st = Storage(tmp_path)
    ups = Uploads(st)
    for b in (b"cfg-a", b"cfg-b", b"shared", b"only-b", b"orphan"):
        _push(st, ups, "app", b)
    a = _manifest_for(st, "app", [b"cfg-a", b"shared"], "a")
    b = _manifest_for(st, "app", [b"cfg-b", b"shared", b"only-b"], "b")
    sig = _manifest_for(st, "app", [b"cfg-a"], None, subject=a)
    st.delete_tag("app", "b")
    report = collect(st, dry_run=True, delete_untagged=True)
    assert report.manifests_deleted == [("app", b)]
    assert set(report.blobs_deleted) == {sha(b"orphan"), sha(b"only-b"), sha(b"cfg-b"), b}
    assert st.blob_size(sha(b"orphan")) is not None  # dry run
    collect(st)
    assert st.blob_size(sha(b"orphan")) is None and st.blob_size(b) is not None
    collect(st, delete_untagged=True)
    assert st.blob_size(sha(b"only-b")) is None and st.blob_size(sha(b"shared")) is not None
    assert st.manifest_media_type("app", sig) is not None  # a referrer of a live manifest
    assert st.revisions("app") == sorted([a, sig])
    with pytest.raises(errors.BlobUnknown):
        st.stat_blob("app", sha(b"only-b"))


def test_locks(tmp_path: Path) -> None:
    st = Storage(tmp_path)
    writer = hold(st.writers_lock, exclusive=False)
    second = hold(st.writers_lock, exclusive=False)  # several writers may share a root
    with pytest.raises(Conflict):
        collect(st)
    os.close(writer)
    os.close(second)
    gc_fd = hold(st.writers_lock, exclusive=True)
    with pytest.raises(Conflict):
        hold(st.writers_lock, exclusive=False)
    os.close(gc_fd)


def test_sweep_stale_uploads(tmp_path: Path) -> None:
    ups = Uploads(Storage(tmp_path))
    old, new = ups.create("r"), ups.create("r")
    assert ups.sweep(max_age=100, now=old.started + 50) == []
    (tmp_path / "uploads" / "half-made").mkdir()
    removed = ups.sweep(max_age=100, now=new.started + 10**6)
    assert set(removed) == {old.uuid, new.uuid, "half-made"}


# -- metrics, config, CLI ---------------------------------------------------------------------


def test_metrics_render() -> None:
    m = Metrics()
    m.request("GET", 200, 0, 10)
    m.request("GET", 200, 0, 5)
    m.upload_done(0.2)
    text = m.render()
    assert 'berth_registry_http_requests_total{method="GET",code="200"} 2' in text
    assert "berth_registry_http_response_bytes_total 15" in text
    assert 'berth_registry_blob_upload_duration_seconds_bucket{le="0.1"} 0' in text
    assert 'berth_registry_blob_upload_duration_seconds_bucket{le="0.5"} 1' in text
    assert 'berth_registry_blob_upload_duration_seconds_bucket{le="+Inf"} 1' in text


def test_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[storage]\ndelete = false\n[auth]\nhtpasswd = "/x"\n'
                    '[[access]]\naccount = "a"\nrepository = "*"\nactions = ["pull"]\n')
    cfg = load(str(path))
    assert not cfg.storage.delete and cfg.auth is not None and cfg.access[0].account == "a"
    path.write_text("[storage]\nnope = 1\n")
    with pytest.raises(ValueError):
        load(str(path))


def test_cli_stays_lazy() -> None:
    code = ("import sys; from berth.cli import main\n"
            "main.main(['-H', 'unix:///nonexistent.sock', 'ps'])\n"
            "print('aiohttp' in sys.modules, 'berth.registry.server.app' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert r.stdout.strip().splitlines()[-1] == "False False", r.stdout + r.stderr


def test_cli_help() -> None:
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", "registry", "serve", "--help"],
                       capture_output=True, text=True, cwd=REPO_ROOT,
                       env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert r.returncode == 0 and "--read-only" in r.stdout and "--tls-cert" in r.stdout
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", "registry", "gc", "--root",
                        "/nonexistent/x", "--config", "/nonexistent/c.toml"],
                       capture_output=True, text=True, cwd=REPO_ROOT,
                       env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert r.returncode == 1 and "berth registry gc" in r.stderr
