"""/etc/hosts and /etc/resolv.conf (pure), published-port requests (pure)."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.network import etcfiles, ports

HOST = "nameserver 127.0.0.53\nnameserver 10.0.0.53\nsearch corp.test\noptions edns0\n"


def test_hosts_layout():
    text = etcfiles.hosts([("172.18.0.2", ["box"])], [("db", "10.0.0.5")], [("172.17.0.3", ["d", "abc", "db1"])])
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-3:] == ["10.0.0.5\tdb", "172.17.0.3\td abc db1", "172.18.0.2\tbox"]
    assert etcfiles.parse_extra_host("h:1.2.3.4") == ("h", "1.2.3.4")
    assert etcfiles.parse_extra_host("h=::1") == ("h", "::1")


def test_resolv_conf_modes():
    text, servers = etcfiles.resolv_conf(HOST, embedded=True)
    assert text.startswith("nameserver 127.0.0.11\nsearch corp.test\noptions edns0 ndots:0\n")
    assert servers == ["127.0.0.53", "10.0.0.53"]   # forwarded from the host's namespace
    text, servers = etcfiles.resolv_conf(HOST, embedded=False)
    assert "127.0.0.53" not in text and "nameserver 10.0.0.53" in text
    text, _ = etcfiles.resolv_conf(HOST, embedded=False, dns=["1.1.1.1"], search=["a.test"], options=["ndots:2"])
    assert text == "nameserver 1.1.1.1\nsearch a.test\noptions ndots:2\n"
    text, _ = etcfiles.resolv_conf("nameserver 127.0.0.53\n", embedded=False, host_network=True)
    assert text == "nameserver 127.0.0.53\n"


def test_port_requests():
    reqs = ports.requests({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                           "53/udp": [{"HostIp": "", "HostPort": "5000-5010"}]},
                          {"80/tcp": {}, "443/tcp": {}}, publish_all=True)
    assert ports.Request("tcp", 80, "127.0.0.1", 8080, 8080) in reqs
    assert ports.Request("udp", 53, "", 5000, 5010) in reqs
    assert ports.Request("tcp", 443, "", 0, 0) in reqs and len(reqs) == 3
    with pytest.raises(InvalidArgument):
        ports.requests({"http/tcp": [{}]}, None, False)
    pm = ports.port_map([ports.Binding("tcp", 80, "", 32768)], {"80/tcp": {}, "81/tcp": {}})
    assert pm == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}], "81/tcp": None}
