"""IPAM (pure): subnet choice, ordered allocation that does not reuse early, requests."""

from __future__ import annotations

from ipaddress import IPv4Address as A, IPv4Network as N

import pytest

from berth.errors import Conflict, InvalidArgument
from berth.network import ipam


def test_choose_subnet_skips_what_is_in_use():
    assert ipam.choose_subnet([]) == N("172.17.0.0/16")
    # an existing docker0 (or anything else) on 172.17 moves us on
    assert ipam.choose_subnet([N("172.17.0.0/16"), N("172.18.5.0/24")]) == N("172.19.0.0/16")
    with pytest.raises(ipam.PoolExhausted):
        ipam.choose_subnet([N("0.0.0.0/0")])


def test_allocate_in_order_skipping_gateway_and_taken():
    net = N("10.0.0.0/29")
    taken = {A("10.0.0.1")}
    a, cur = ipam.allocate(net, None, taken, 0)
    assert a == A("10.0.0.2")
    taken.add(a)
    b, cur = ipam.allocate(net, None, taken, cur)
    assert b == A("10.0.0.3")
    # releasing .2 does not make it the next one: the cursor moves on
    taken.discard(a)
    taken.add(b)
    c, cur = ipam.allocate(net, None, taken, cur)
    assert c == A("10.0.0.4")


def test_allocate_wraps_and_exhausts_without_duplicates():
    net = N("10.0.0.0/29")  # .1 gateway, .2-.6 usable
    taken = {A("10.0.0.1")}
    got, cur = [], 0
    for _ in range(5):
        a, cur = ipam.allocate(net, None, taken, cur)
        assert a not in taken
        taken.add(a)
        got.append(a)
    assert len(set(got)) == 5 and A("10.0.0.0") not in got and A("10.0.0.7") not in got
    with pytest.raises(ipam.PoolExhausted):
        ipam.allocate(net, None, taken, cur)
    taken.discard(A("10.0.0.3"))
    assert ipam.allocate(net, None, taken, cur)[0] == A("10.0.0.3")


def test_ip_range_and_requests():
    net, rng = N("10.1.0.0/24"), N("10.1.0.128/25")
    assert ipam.allocate(net, rng, set(), 0)[0] == A("10.1.0.128")
    ipam.check_config(net, A("10.1.0.254"), rng)
    with pytest.raises(InvalidArgument):
        ipam.check_config(net, A("10.2.0.1"), None)
    with pytest.raises(InvalidArgument):
        ipam.check_config(net, None, N("10.2.0.0/25"))
    assert ipam.request(net, A("10.1.0.7"), set()) == A("10.1.0.7")
    with pytest.raises(Conflict):
        ipam.request(net, A("10.1.0.7"), {A("10.1.0.7")})
    with pytest.raises(InvalidArgument):
        ipam.request(net, A("10.9.0.7"), set())


def test_mac_and_parsing():
    assert ipam.mac_for(A("172.17.0.2")) == "02:42:ac:11:00:02"
    assert ipam.parse_subnet("10.0.0.5/24") == N("10.0.0.0/24")
    for bad in ("nope", "fd00::/64", "10.0.0.0/31"):
        with pytest.raises(InvalidArgument):
            ipam.parse_subnet(bad)


def test_ipv6_allocation_request_and_ula():
    from ipaddress import IPv6Address as A6, IPv6Network as N6
    net = ipam.parse_subnet6("fd00:1::/64")
    taken = {A6("fd00:1::1")}
    a, cur = ipam.allocate(net, None, taken, 0)
    assert a == A6("fd00:1::2") and cur == 3
    taken.add(a)
    assert ipam.allocate(net, None, taken, cur)[0] == A6("fd00:1::3")
    assert ipam.request(net, A6("fd00:1::42"), taken) == A6("fd00:1::42")
    with pytest.raises(Conflict):
        ipam.request(net, A6("fd00:1::2"), taken)
    with pytest.raises(InvalidArgument):
        ipam.request(net, A6("fd00:2::2"), taken)
    with pytest.raises(InvalidArgument):
        ipam.parse_subnet6("10.0.0.0/8")
    ula = ipam.ula_subnet([N6("fc00::/8")])
    assert ula.prefixlen == 64 and ula.subnet_of(N6("fd00::/8"))
