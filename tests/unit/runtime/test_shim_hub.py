"""The shim's client hub: a client that left while its exec was being set up.

Found by the faults suite under ``--userns-default auto`` (kill -9 of berthd at random points):
berthd died with an exec request in flight, its "no more stdin" arrived before the exec's
reply, the reply failed and dropped the client, and replaying the early stdin then polled the
closed socket (ValueError: fd -1), which took the whole shim host, and every container it held,
down (their inits killed: exit 137)."""

from __future__ import annotations

import select
import socket

from berth.runtime.shim.stdio import Client, Hub


def _hub_with_client() -> tuple[Hub, Client, socket.socket]:
    hub = Hub()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    c = Client(ours)
    hub.clients[ours.fileno()] = c
    hub.poll.register(ours.fileno())
    return hub, c, theirs


def test_stop_reading_a_dropped_client_is_a_no_op() -> None:
    hub, c, theirs = _hub_with_client()
    theirs.close()
    hub.drop(c)
    assert not hub.connected(c)
    hub.stop_reading(c)  # raised ValueError (fd -1) before
    hub.drop(c)  # and dropping twice is harmless


def test_stop_reading_keeps_polling_a_client_with_output_left() -> None:
    hub, c, theirs = _hub_with_client()
    try:
        c.out = b"left"
        hub.stop_reading(c)
        assert hub.connected(c)
        theirs.send(b"x")
        events = [ev for fd, ev in hub.poll.poll(0) if fd == c.sock.fileno()]
        assert events and events[0] & select.POLLOUT and not events[0] & select.POLLIN, events
    finally:
        hub.drop(c)
        theirs.close()
