"""Legacy links on the default bridge (``--link name:alias``): the environment variables dockerd
sets in the linking container (moby daemon/links), the HostConfig.Links
form inspect shows, and ``docker rm --link``.

Containers on the default bridge get ``--dns 127.0.0.1`` so nothing leaves the machine.
"""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.root


@pytest.fixture
def names(docker):
    made: list[str] = []
    yield made
    for n in reversed(made):
        docker("rm", "-f", n)


def _name(names: list[str], prefix: str) -> str:
    n = f"{prefix}-{uuid.uuid4().hex[:8]}"
    names.append(n)
    return n


def _ip(docker, name: str) -> str:
    out = json.loads(docker("inspect", name).stdout)[0]
    return out["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]


def _run_db(docker, names) -> str:
    db = _name(names, "db")
    r = docker("run", "-d", "--dns", "127.0.0.1", "--name", db, "--expose", "5432", "--expose", "53/udp",
               "-e", "POSTGRES_PASSWORD=secret", "-e", "WITH_EQ=a=b", "busybox", "sleep", "120")
    assert r.returncode == 0, r
    return db


def _env_of_link(docker, names, db: str) -> dict[str, str]:
    web = _name(names, "web")
    r = docker("run", "--name", web, "--dns", "127.0.0.1", "--link", f"{db}:my-db", "busybox", "env")
    assert r.returncode == 0, r
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line), web  # type: ignore[return-value]


def test_link_name_variable(docker, names):
    """Docker 20.10+, API 1.41: `--link db:my-db` sets MY_DB_NAME=/<web>/my-db."""
    db = _run_db(docker, names)
    env, web = _env_of_link(docker, names, db)
    assert env["MY_DB_NAME"] == f"/{web}/my-db"


def test_link_port_variables(docker, names):
    """Docker 20.10+, API 1.41: MY_DB_PORT (first TCP port) and _PORT_<n>_<PROTO>[_ADDR|_PORT|_PROTO]."""
    db = _run_db(docker, names)
    ip = _ip(docker, db)
    env, _ = _env_of_link(docker, names, db)
    assert env["MY_DB_PORT"] == f"tcp://{ip}:5432"
    assert env["MY_DB_PORT_5432_TCP"] == f"tcp://{ip}:5432"
    assert env["MY_DB_PORT_5432_TCP_ADDR"] == ip
    assert env["MY_DB_PORT_5432_TCP_PORT"] == "5432"
    assert env["MY_DB_PORT_5432_TCP_PROTO"] == "tcp"
    assert env["MY_DB_PORT_53_UDP"] == f"udp://{ip}:53"
    assert env["MY_DB_PORT_53_UDP_PROTO"] == "udp"


def test_link_env_variables(docker, names):
    """Docker 20.10+, API 1.41: MY_DB_ENV_<var> for the linked container's env, but not PATH/HOME."""
    db = _run_db(docker, names)
    env, _ = _env_of_link(docker, names, db)
    assert env["MY_DB_ENV_POSTGRES_PASSWORD"] == "secret"
    assert env["MY_DB_ENV_WITH_EQ"] == "a=b"
    assert "MY_DB_ENV_PATH" not in env and "MY_DB_ENV_HOME" not in env


def test_link_port_range_variables(docker, names):
    """Docker 20.10+, API 1.41: consecutive exposed ports also get _START/_END variables."""
    db = _name(names, "db")
    assert docker("run", "-d", "--dns", "127.0.0.1", "--name", db, "--expose", "8000-8002",
                  "busybox", "sleep", "120").returncode == 0
    ip = _ip(docker, db)
    env, _ = _env_of_link(docker, names, db)
    assert env["MY_DB_PORT_8000_TCP_START"] == f"tcp://{ip}:8000"
    assert env["MY_DB_PORT_8000_TCP_END"] == f"tcp://{ip}:8002"
    assert env["MY_DB_PORT_8000_TCP_PORT_START"] == "8000"
    assert env["MY_DB_PORT_8000_TCP_PORT_END"] == "8002"


def test_inspect_host_config_links(docker, names):
    """Docker 20.10+, API 1.41: inspect shows HostConfig.Links as ["/<db>:/<web>/<alias>"]."""
    db = _run_db(docker, names)
    web = _name(names, "web")
    assert docker("create", "--name", web, "--link", f"{db}:my-db", "busybox", "true").returncode == 0
    hc = json.loads(docker("inspect", web).stdout)[0]["HostConfig"]
    assert hc["Links"] == [f"/{db}:/{web}/my-db"]


def test_link_to_missing_container(berthd, busybox):
    """Docker 20.10+, API 1.41: a link to no container -> 400 `could not get container for x`."""
    body = {"Image": busybox, "Cmd": ["true"], "HostConfig": {"Links": ["nosuch-link:db"]}}
    status, raw = berthd.request("POST", "/v1.41/containers/create", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 400, raw
    assert json.loads(raw)["message"] == "could not get container for nosuch-link: No such container: nosuch-link"


def test_rm_link_removes_the_link(docker, names):
    """Docker 20.10+, API 1.41: `docker rm --link /web/alias` (DELETE /containers/web/alias?link=1)."""
    db = _run_db(docker, names)
    web = _name(names, "web")
    assert docker("create", "--name", web, "--link", f"{db}:my-db", "busybox", "true").returncode == 0
    r = docker("rm", "--link", f"/{web}/my-db")
    assert r.returncode == 0, r
    hc = json.loads(docker("inspect", web).stdout)[0]["HostConfig"]
    assert not hc["Links"]
    assert json.loads(docker("inspect", db).stdout)[0]["State"]["Running"]


def test_rm_link_without_parent_is_refused(berthd, docker, names):
    """Docker 20.10+, API 1.41: `?link=1` on a plain name -> the default link name cannot go, and
    the container stays (dockerd's error is untyped, a 500; berth says 409 Conflict)."""
    db = _run_db(docker, names)
    status, raw = berthd.request("DELETE", f"/v1.41/containers/{db}?link=1")
    assert status >= 400, raw
    assert json.loads(raw)["message"] == "Conflict, cannot remove the default link name of the container"
    assert json.loads(docker("inspect", db).stdout)[0]["State"]["Running"]


def test_rename_child_updates_links(docker, names):
    """Docker 20.10+, API 1.41: HostConfig.Links comes from the link graph, so after
    `docker rename db db2` the parent's inspect says /db2:/web/my-db, and the parent's
    /etc/hosts after a restart still has the alias, with the child's new name."""
    db = _run_db(docker, names)
    web = _name(names, "web")
    assert docker("run", "-d", "--dns", "127.0.0.1", "--name", web, "--link", f"{db}:my-db",
                  "busybox", "sleep", "120").returncode == 0
    db2 = _name(names, "db2")
    assert docker("rename", db, db2).returncode == 0
    hc = json.loads(docker("inspect", web).stdout)[0]["HostConfig"]
    assert hc["Links"] == [f"/{db2}:/{web}/my-db"]
    assert docker("restart", "-t", "0", web).returncode == 0
    hosts = docker("exec", web, "cat", "/etc/hosts").stdout
    line = next(ln for ln in hosts.splitlines() if "my-db" in ln.split())
    assert line.split()[0] == _ip(docker, db2) and line.split()[-1] == db2


def test_rename_parent_updates_links(docker, names):
    """Docker 20.10+, API 1.41: renaming the linking container moves its links with it:
    /<db>:/<web2>/my-db."""
    db = _run_db(docker, names)
    web = _name(names, "web")
    assert docker("create", "--name", web, "--link", f"{db}:my-db", "busybox", "true").returncode == 0
    web2 = _name(names, "web2")
    assert docker("rename", web, web2).returncode == 0
    hc = json.loads(docker("inspect", web2).stdout)[0]["HostConfig"]
    assert hc["Links"] == [f"/{db}:/{web2}/my-db"]
