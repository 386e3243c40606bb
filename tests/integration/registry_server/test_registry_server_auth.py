"""Basic (htpasswd, bcrypt) and Bearer (token endpoint) auth at the HTTP level: challenges,
grants per account and repository, and what a refused request may and may not reveal."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path
from typing import Iterator

import bcrypt
import pytest
from registry_server_support import InProcServer, busybox_image, call, push_image

RULES = """
[[access]]
account = "alice"
repository = "*"
actions = ["*"]
[[access]]
account = "bob"
repository = "alice/*"
actions = ["pull"]
[[access]]
account = "anonymous"
repository = "public/*"
actions = ["pull"]
"""


def write_htpasswd(path: Path) -> Path:
    # htpasswd -B writes $2y$; bcrypt's own prefix is $2b$: accept both
    alice = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
    bob = bcrypt.hashpw(b"bob-pw", bcrypt.gensalt(4)).decode()
    path.write_text(f"alice:{alice}\nbob:{bob}\nmallory:{{SHA}}notbcrypt\n")
    return path


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def basic_srv(tmp_path: Path) -> Iterator[InProcServer]:
    htpasswd = write_htpasswd(tmp_path / "htpasswd")
    s = InProcServer(tmp_path / "root", config=f'[auth]\nhtpasswd = "{htpasswd}"\n'
                     f'realm = "test-realm"\n{RULES}')
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def token_srv(tmp_path: Path) -> Iterator[InProcServer]:
    htpasswd = write_htpasswd(tmp_path / "htpasswd")
    s = InProcServer(tmp_path / "root", config=f'[auth]\nhtpasswd = "{htpasswd}"\n'
                     f'[auth.token]\nservice = "test-svc"\nissuer = "test-iss"\n{RULES}')
    try:
        yield s
    finally:
        s.stop()


def test_basic_challenge_and_credentials(basic_srv: InProcServer) -> None:
    r = call(basic_srv.host, "GET", "/v2/")
    assert r.status == 401 and r.codes() == ["UNAUTHORIZED"]
    assert r.headers["www-authenticate"] == 'Basic realm="test-realm"'
    for user, pw in (("alice", "wrong"), ("nobody", "x"), ("mallory", "x")):
        r = call(basic_srv.host, "GET", "/v2/", headers=basic(user, pw))
        assert r.status == 401 and r.codes() == ["UNAUTHORIZED"]
    garbled = call(basic_srv.host, "GET", "/v2/", headers={"Authorization": "Basic !!!"})
    assert garbled.status == 401
    assert call(basic_srv.host, "GET", "/v2/", headers=basic("alice", "alice-pw")).status == 200
    assert call(basic_srv.host, "GET", "/v2/", headers=basic("bob", "bob-pw")).status == 200


def test_basic_rules(basic_srv: InProcServer) -> None:
    img = busybox_image()
    alice, bob = basic("alice", "alice-pw"), basic("bob", "bob-pw")
    assert push_image(basic_srv.host, "alice/app", img, headers=alice).status == 201
    assert push_image(basic_srv.host, "public/app", img, headers=alice).status == 201
    # bob may pull alice/*, not push
    assert call(basic_srv.host, "GET", "/v2/alice/app/manifests/latest", headers=bob).status == 200
    r = call(basic_srv.host, "POST", "/v2/alice/app/blobs/uploads/", headers=bob)
    assert r.status == 403 and r.codes() == ["DENIED"]
    # a repository bob has no rule for: denied whether or not it exists (nothing leaked)
    for repo in ("secret/app", "public/nothing-here"):
        r = call(basic_srv.host, "GET", f"/v2/{repo}/tags/list", headers=bob)
        assert r.status == 403 and r.codes() == ["DENIED"], repo
        assert "NAME_UNKNOWN" not in r.body.decode()
    # anonymous may pull public/*, nothing else
    assert call(basic_srv.host, "GET", "/v2/public/app/tags/list").json()["tags"] == ["latest"]
    r = call(basic_srv.host, "GET", "/v2/alice/app/tags/list")
    assert r.status == 401 and "www-authenticate" in r.headers
    assert call(basic_srv.host, "DELETE", "/v2/public/app/manifests/latest").status == 401
    # the catalog shows each account what it may pull
    cat = call(basic_srv.host, "GET", "/v2/_catalog", headers=bob).json()
    assert cat == {"repositories": ["alice/app"]}
    cat = call(basic_srv.host, "GET", "/v2/_catalog", headers=alice).json()
    assert cat == {"repositories": ["alice/app", "public/app"]}


def get_token(host: str, scopes: list[str], creds: dict[str, str] | None = None,
              service: str = "test-svc") -> tuple[int, dict]:
    query = urllib.parse.urlencode([("service", service)] + [("scope", s) for s in scopes])
    r = call(host, "GET", f"/auth/token?{query}", headers=creds or {})
    return r.status, (r.json() if r.body else {})


def test_bearer_flow(token_srv: InProcServer) -> None:
    host = token_srv.host
    r = call(host, "GET", "/v2/")
    assert r.status == 401
    assert r.headers["www-authenticate"] == \
        f'Bearer realm="http://{host}/auth/token",service="test-svc"'
    r = call(host, "GET", "/v2/alice/app/tags/list")
    assert r.headers["www-authenticate"].endswith(',scope="repository:alice/app:pull"')
    assert r.json()["errors"][0]["detail"] == [
        {"Type": "repository", "Name": "alice/app", "Action": "pull"}]
    r = call(host, "POST", "/v2/alice/app/blobs/uploads/")
    assert 'scope="repository:alice/app:pull,push"' in r.headers["www-authenticate"]

    status, body = get_token(host, ["repository:alice/app:pull,push"],
                             basic("alice", "alice-pw"))
    assert status == 200 and body["token"] == body["access_token"]
    assert body["expires_in"] > 0 and body["issued_at"].endswith("Z")
    claims = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[1] + "=="))
    assert claims["access"] == [{"type": "repository", "name": "alice/app",
                                 "actions": ["pull", "push"]}]
    img = busybox_image()
    assert push_image(host, "alice/app", img, headers=bearer(body["token"])).status == 201
    assert call(host, "GET", "/v2/", headers=bearer(body["token"])).status == 200


def test_bearer_grants_only_what_rules_allow(token_srv: InProcServer) -> None:
    host = token_srv.host
    alice_status, alice = get_token(host, ["repository:alice/app:pull,push"],
                                    basic("alice", "alice-pw"))
    push_image(host, "alice/app", busybox_image(), headers=bearer(alice["token"]))
    status, body = get_token(host, ["repository:alice/app:pull,push,delete"],
                             basic("bob", "bob-pw"))
    claims = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[1] + "=="))
    assert claims["access"] == [{"type": "repository", "name": "alice/app", "actions": ["pull"]}]
    tok = bearer(body["token"])
    assert call(host, "GET", "/v2/alice/app/tags/list", headers=tok).status == 200
    r = call(host, "POST", "/v2/alice/app/blobs/uploads/", headers=tok)
    assert r.status == 403 and r.codes() == ["DENIED"]
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="repository:alice/app:pull,push"' in r.headers["www-authenticate"]
    # a repository outside the token: refused before anything about it is looked up
    r = call(host, "GET", "/v2/secret/tags/list", headers=tok)
    assert r.status == 403 and "NAME_UNKNOWN" not in r.body.decode()
    # anonymous tokens carry only anonymous grants
    status, anon = get_token(host, ["repository:public/x:pull", "repository:alice/app:pull"])
    claims = json.loads(base64.urlsafe_b64decode(anon["token"].split(".")[1] + "=="))
    assert claims["sub"] == "" and [a["name"] for a in claims["access"]] == ["public/x"]


def test_bearer_bad_tokens(token_srv: InProcServer) -> None:
    host = token_srv.host
    status, _ = get_token(host, ["repository:alice/app:pull"], basic("alice", "nope"))
    assert status == 401
    _, body = get_token(host, ["repository:alice/app:pull"], basic("alice", "alice-pw"))
    head, claims, sig = body["token"].split(".")
    forged_claims = base64.urlsafe_b64encode(json.dumps({
        **json.loads(base64.urlsafe_b64decode(claims + "==")),
        "access": [{"type": "repository", "name": "secret", "actions": ["pull"]}]})
        .encode()).rstrip(b"=").decode()
    for token in (f"{head}.{forged_claims}.{sig}", "not.a.token", "garbage"):
        r = call(host, "GET", "/v2/secret/tags/list", headers=bearer(token))
        assert r.status == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    tokens = token_srv.registry.auth.tokens
    expired, _ = tokens.issue("alice", [], now=1_000_000)
    assert call(host, "GET", "/v2/", headers=bearer(expired)).status == 401
    # Basic credentials are not accepted in place of a token
    assert call(host, "GET", "/v2/", headers=basic("alice", "alice-pw")).status == 401


def test_token_post_password_grant(token_srv: InProcServer) -> None:
    host = token_srv.host
    form = urllib.parse.urlencode({"grant_type": "password", "username": "alice",
                                   "password": "alice-pw", "service": "test-svc",
                                   "scope": "repository:alice/app:pull", "client_id": "t"})
    r = call(host, "POST", "/auth/token", form.encode(),
             {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200 and r.json()["scope"] == "repository:alice/app:pull"
    assert call(host, "GET", "/v2/", headers=bearer(r.json()["access_token"])).status == 200
    bad = urllib.parse.urlencode({"grant_type": "password", "username": "alice",
                                  "password": "x"})
    assert call(host, "POST", "/auth/token", bad.encode(),
                {"Content-Type": "application/x-www-form-urlencoded"}).status == 401
    other = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": "x"})
    assert call(host, "POST", "/auth/token", other.encode(),
                {"Content-Type": "application/x-www-form-urlencoded"}).status == 400
