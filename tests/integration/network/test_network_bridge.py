"""Networks through the real docker CLI: published ports, user networks and their DNS, the
default bridge, none, host, container:, the run flags, connect/disconnect.

All traffic stays on this machine: loopback and the bridges and namespaces berthd makes. A
container on the default bridge gets ``--dns 127.0.0.1`` when a lookup must fail, so that no
query leaves for the host's resolvers.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid

import pytest

pytestmark = pytest.mark.root


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def cleanup(docker):
    names: list[tuple[str, str]] = []
    yield names
    for kind, name in reversed(names):
        if kind == "container":
            docker("rm", "-f", "-v", name)
        else:
            docker(kind, "rm", name)


def ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def wait_http(url: str, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


HTTPD = "mkdir -p /www && echo 'hello from berth' > /www/index.html && exec httpd -f -p 80 -h /www"


def test_published_port_serves_http_to_the_host(docker, cleanup):
    port, name = free_port(), f"web-{uid()}"
    cleanup.append(("container", name))
    ok(docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", HTTPD))
    assert wait_http(f"http://127.0.0.1:{port}/index.html") == b"hello from berth\n"
    assert ok(docker("port", name)).strip() == f"80/tcp -> 127.0.0.1:{port}"
    info = json.loads(ok(docker("inspect", name)))[0]
    assert info["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert info["NetworkSettings"]["IPAddress"]
    assert f"127.0.0.1:{port}->80/tcp" in ok(docker("ps", "--filter", f"name={name}"))
    # While it runs the port is taken on the host, so nothing else can grab it.
    s = socket.socket()
    with pytest.raises(OSError):
        s.bind(("127.0.0.1", port))
    s.close()


UDP_ECHO = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 53))\n"
            "while True:\n    d, a = s.recvfrom(100); s.sendto(b'echo:' + d, a)")


def test_random_port_udp_and_publish_all(docker, cleanup):
    # busybox has no UDP server: the host's python, bind-mounted read-only, runs in the
    # container's network namespace (chroot into the bind).
    name, uport = f"udp-{uid()}", free_port(socket.SOCK_DGRAM)
    cleanup.append(("container", name))
    ok(docker("run", "-d", "--name", name, "--expose", "81", "-P", "-p", "80", "-p", f"127.0.0.1:{uport}:53/udp",
              "-v", "/:/host:ro", "busybox", "sh", "-c",
              f"chroot /host /usr/bin/python3 -c \"{UDP_ECHO}\" & exec httpd -f -p 80 -h /etc"))
    out = ok(docker("port", name))
    lines = dict(line.split(" -> ", 1) for line in out.strip().splitlines())
    assert set(lines) == {"80/tcp", "81/tcp", "53/udp"}, out
    http_port = int(lines["80/tcp"].rsplit(":", 1)[1])
    assert b"root:x:0:0" in wait_http(f"http://127.0.0.1:{http_port}/passwd")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    deadline = time.monotonic() + 10
    try:
        while True:
            s.sendto(b"ping-udp", ("127.0.0.1", uport))
            try:
                assert s.recvfrom(100)[0] == b"echo:ping-udp"
                break
            except socket.timeout:
                assert time.monotonic() < deadline, docker("logs", name).stdout + docker("logs", name).stderr
    finally:
        s.close()


def test_port_range(docker, cleanup):
    name = f"range-{uid()}"
    base = free_port()
    cleanup.append(("container", name))
    r = docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{base}-{base + 1}:80-81", "busybox", "sleep", "30")
    if r.returncode != 0 and "already in use" in r.stderr:
        pytest.skip("the neighbouring port was taken meanwhile")
    ok(r)
    out = ok(docker("port", name))
    assert f"80/tcp -> 127.0.0.1:{base}" in out and f"81/tcp -> 127.0.0.1:{base + 1}" in out


def test_port_in_use_is_a_clear_error_at_start(docker, cleanup):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    name = f"busy-{uid()}"
    cleanup.append(("container", name))
    try:
        r = docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "30")
    finally:
        s.close()
    assert r.returncode == 125
    assert "address already in use" in r.stderr
    assert json.loads(ok(docker("inspect", name)))[0]["State"]["Running"] is False


def test_an_address_the_host_lacks_is_a_clear_error_and_frees_the_other_ports(docker, cleanup):
    port = free_port()
    name = f"noaddr-{uid()}"
    cleanup.append(("container", name))
    r = docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "-p", f"192.0.2.77:{port}:81",
               "busybox", "sleep", "30")
    assert r.returncode == 125
    assert "driver failed programming external connectivity on endpoint" in r.stderr, r.stderr
    assert f"failed to bind host port for 192.0.2.77:{port}/tcp: cannot assign requested address" in r.stderr
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))  # the binding made before the failing one was let go
    finally:
        s.close()


_PING = pytest.mark.host_userns("busybox's ping needs a raw socket, so CAP_NET_RAW over the network namespace, "
                                "which berthd (as dockerd's libnetwork) makes in the host's user namespace")


@_PING
def test_user_network_resolves_names_aliases_and_short_ids(docker, cleanup):
    net, web = f"net-{uid()}", f"web-{uid()}"
    cleanup += [("network", net), ("container", web)]
    ok(docker("network", "create", net))
    cid = ok(docker("run", "-d", "--name", web, "--network", net, "--network-alias", "www", "busybox",
                    "sh", "-c", HTTPD)).strip()
    script = ("set -e; ping -c1 -W2 {0} >/dev/null; ping -c1 -W2 www >/dev/null; ping -c1 -W2 {1} >/dev/null; "
              "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://{0}/index.html && exit 0; sleep 0.2; done; exit 1")
    r = docker("run", "--rm", "--network", net, "busybox", "sh", "-c", script.format(web, cid[:12]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hello from berth" in r.stdout
    r = docker("run", "--rm", "--network", net, "busybox", "cat", "/etc/resolv.conf")
    assert "nameserver 127.0.0.11" in ok(r)


@_PING
def test_default_bridge_has_no_names_but_links_add_hosts(docker, cleanup):
    a = f"a-{uid()}"
    cleanup.append(("container", a))
    ok(docker("run", "-d", "--name", a, "busybox", "sleep", "60"))
    ip = json.loads(ok(docker("inspect", a)))[0]["NetworkSettings"]["IPAddress"]
    r = docker("run", "--rm", "--dns", "127.0.0.1", "busybox", "ping", "-c1", "-W1", a)
    assert r.returncode != 0
    r = docker("run", "--rm", "--dns", "127.0.0.1", "--link", f"{a}:db", "busybox", "sh", "-c",
               "cat /etc/hosts; ping -c1 -W2 db")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{ip}\tdb" in r.stdout
    # By address the default bridge connects them.
    ok(docker("run", "--rm", "busybox", "ping", "-c1", "-W2", ip))


def test_none_has_only_lo_and_host_has_the_hosts(docker):
    out = ok(docker("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"))
    assert [line.split(":")[1].strip() for line in out.strip().splitlines()] == ["lo"]
    out = ok(docker("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link"))
    host_links = open("/proc/net/dev").read()
    assert all(line.split(":")[1].strip().split("@")[0] in host_links for line in out.strip().splitlines())
    assert ok(docker("run", "--rm", "--network", "host", "busybox", "hostname")).strip() == socket.gethostname()


def test_container_mode_shares_the_namespace(docker, cleanup):
    a = f"ns-{uid()}"
    cleanup.append(("container", a))
    ok(docker("run", "-d", "--name", a, "busybox", "sleep", "60"))
    mine = ok(docker("exec", a, "readlink", "/proc/self/ns/net")).strip() if docker("exec", a, "true").returncode == 0 \
        else None
    out = ok(docker("run", "--rm", "--network", f"container:{a}", "busybox", "sh", "-c",
                    "readlink /proc/self/ns/net; ip -o -4 addr show eth0"))
    ip = json.loads(ok(docker("inspect", a)))[0]["NetworkSettings"]["IPAddress"]
    assert f"inet {ip}/" in out
    if mine:
        assert out.splitlines()[0] == mine


def test_run_flags_ip_alias_hosts_dns_hostname_mac(docker, cleanup):
    net, name = f"fl-{uid()}", f"fl-{uid()}"
    cleanup += [("network", net), ("container", name)]
    ok(docker("network", "create", "--subnet", "10.213.0.0/24", "--gateway", "10.213.0.254",
              "--ip-range", "10.213.0.128/25", "--label", "team=blue", "--internal", net))
    info = json.loads(ok(docker("network", "inspect", net)))[0]
    assert info["IPAM"]["Config"] == [{"Subnet": "10.213.0.0/24", "IPRange": "10.213.0.128/25",
                                       "Gateway": "10.213.0.254"}]
    assert info["Internal"] is True and info["Labels"] == {"team": "blue"}
    out = ok(docker("run", "--name", name, "--network", net, "--ip", "10.213.0.7", "--hostname", "box",
                    "--domainname", "example.test",
                    "--add-host", "db.local:10.9.8.7", "--dns-search", "corp.test", "--dns-option", "ndots:2",
                    "busybox", "sh", "-c",
                    "hostname; cat /etc/hosts /etc/resolv.conf; ip -o -4 addr show eth0; ip link show eth0; ip route"))
    assert out.splitlines()[0] == "box"
    assert "10.9.8.7\tdb.local" in out
    assert "10.213.0.7\tbox.example.test box" in out
    assert "search corp.test" in out and "ndots:2" in out
    assert "inet 10.213.0.7/24" in out
    assert "default" not in out  # internal: no way out
    # Automatic addresses come from the range.
    out = ok(docker("run", "--rm", "--network", net, "busybox", "ip", "-o", "-4", "addr", "show", "eth0"))
    assert "inet 10.213.0.128/24" in out or "inet 10.213.0.129/24" in out
    r = docker("run", "--rm", "--network", net, "--ip", "10.213.0.254", "busybox", "true")
    assert r.returncode != 0 and "in use" in r.stderr


def test_mac_address_through_the_api(berthd, busybox):
    # The docker CLI sends --mac-address per network only to API >= 1.44; the legacy field:
    body = json.dumps({"Image": busybox, "Cmd": ["cat", "/sys/class/net/eth0/address"],
                       "MacAddress": "02:42:aa:bb:cc:dd"}).encode()
    status, out = berthd.request("POST", "/containers/create", body, {"Content-Type": "application/json"})
    assert status == 201, out
    cid = json.loads(out)["Id"]
    try:
        assert berthd.request("POST", f"/containers/{cid}/start")[0] == 204
        status, out = berthd.request("POST", f"/containers/{cid}/wait")
        assert json.loads(out)["StatusCode"] == 0
        status, out = berthd.request("GET", f"/containers/{cid}/logs?stdout=1")
        assert b"02:42:aa:bb:cc:dd" in out
    finally:
        berthd.request("DELETE", f"/containers/{cid}?force=1")


@_PING
def test_connect_and_disconnect_a_running_container(docker, cleanup):
    net, name = f"cn-{uid()}", f"cn-{uid()}"
    cleanup += [("network", net), ("container", name)]
    ok(docker("network", "create", net))
    ok(docker("run", "-d", "--name", name, "busybox", "sleep", "60"))
    ok(docker("network", "connect", "--alias", "extra", net, name))
    out = ok(docker("exec", name, "ip", "-o", "link"))
    assert "eth1" in out
    info = json.loads(ok(docker("inspect", name)))[0]["NetworkSettings"]["Networks"]
    assert set(info) == {"bridge", net} and info[net]["IPAddress"]
    r = docker("run", "--rm", "--network", net, "busybox", "ping", "-c1", "-W2", "extra")
    assert r.returncode == 0, r.stdout + r.stderr
    r = docker("network", "rm", net)
    assert r.returncode != 0 and "active endpoints" in r.stderr
    ok(docker("network", "disconnect", net, name))
    assert "eth1" not in ok(docker("exec", name, "ip", "-o", "link"))


def test_published_port_reachable_from_another_container(docker, cleanup):
    name, port = f"pp-{uid()}", free_port()
    cleanup.append(("container", name))
    ok(docker("run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "sh", "-c", HTTPD))
    gw = json.loads(ok(docker("network", "inspect", "bridge")))[0]["IPAM"]["Config"][0]["Gateway"]
    r = docker("run", "--rm", "busybox", "sh", "-c",
               f"for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://{gw}:{port}/ && exit 0; sleep 0.2; done; exit 1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hello from berth" in r.stdout


def test_network_ls_inspect_rm_prune(docker, cleanup):
    net = f"ls-{uid()}"
    ok(docker("network", "create", "--label", "x=1", net))
    assert net in ok(docker("network", "ls", "--filter", "label=x=1", "--format", "{{.Name}}")).split()
    assert {"bridge", "host", "none"} <= set(ok(docker("network", "ls", "--format", "{{.Name}}")).split())
    r = docker("network", "create", net)
    assert r.returncode != 0 and "already exists" in r.stderr
    r = docker("network", "rm", "bridge")
    assert r.returncode != 0 and "pre-defined" in r.stderr
    assert net in ok(docker("network", "prune", "-f", "--filter", "label=x=1"))
    r = docker("network", "inspect", net)
    assert r.returncode != 0 and "not found" in r.stderr
