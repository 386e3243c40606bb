"""``--domainname`` and a dotted ``--hostname`` as dockerd 28 applies them: Config.Domainname
is the kernel's NIS domain (moby's setLinuxDomainname: the kernel.domainname sysctl, which an
explicit --sysctl overrides), /etc/hostname holds the hostname alone, and /etc/hosts lists the
FQDN then its first label (libnetwork's "FQDN and the bare hostname"). The CLI does not split
``--hostname a.b.c`` (Docker >= 1.11): Config.Hostname is "a.b.c", Domainname "".

Containers get ``--dns 127.0.0.1`` so nothing leaves the machine.
"""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.root

SHOW = "cat /proc/sys/kernel/domainname; hostname; cat /etc/hostname; hostname -d; grep -v -e localhost -e ip6- /etc/hosts"


def _run(docker, *args: str) -> list[str]:
    r = docker("run", "--rm", "--dns", "127.0.0.1", *args, "busybox", "sh", "-c", SHOW)
    assert r.returncode == 0, r
    return r.stdout.splitlines()


def test_domainname_flag(docker):
    """Docker 28, API 1.50: `--hostname web --domainname example.com`: the kernel's domain is
    example.com, the hostname and /etc/hostname are `web`, /etc/hosts has `web.example.com web`."""
    out = _run(docker, "--hostname", "web", "--domainname", "example.com")
    assert out[:4] == ["example.com", "web", "web", "example.com"]
    assert out[4].split()[1:] == ["web.example.com", "web"]


def test_dotted_hostname_not_split(docker):
    """Docker 28, API 1.50: `--hostname a.b.c` stays whole (no kernel domain: `(none)`), and
    /etc/hosts names `a.b.c a`."""
    out = _run(docker, "--hostname", "a.b.c")
    assert out[:4] == ["(none)", "a.b.c", "a.b.c", "b.c"]
    assert out[4].split()[1:] == ["a.b.c", "a"]


def test_sysctl_overrides_domainname(berthd, busybox):
    """Docker 28 (moby TestSysctlOverride): HostConfig.Sysctls kernel.domainname wins over
    Domainname (the CLI refuses that sysctl itself; docker-py sends it)."""
    import docker

    client = docker.DockerClient(base_url=berthd.host)
    out = client.containers.run(busybox, ["cat", "/proc/sys/kernel/domainname"], domainname="example.com",
                                sysctls={"kernel.domainname": "other.net"}, dns=["127.0.0.1"], remove=True)
    assert out.decode().strip() == "other.net"


def test_inspect_domainname(docker):
    """Docker 20.10+, API 1.41: Config.Hostname and Config.Domainname as given."""
    name = f"dn-{uuid.uuid4().hex[:8]}"
    assert docker("create", "--name", name, "--hostname", "a.b.c", "--domainname", "example.com",
                  "busybox", "true").returncode == 0
    try:
        cfg = json.loads(docker("inspect", name).stdout)[0]["Config"]
        assert (cfg["Hostname"], cfg["Domainname"]) == ("a.b.c", "example.com")
    finally:
        docker("rm", "-f", name)
