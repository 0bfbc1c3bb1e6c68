"""Ports a home is given: never from the pool outgoing connections take their source ports from."""

from __future__ import annotations

import socket

from mercato.runtime import paths


def test_free_ports_come_from_below_the_ephemeral_range() -> None:
    low, _ = paths._ephemeral_range()
    ports = {paths.free_port() for _ in range(50)}
    assert all(port < low for port in ports), sorted(ports)
    assert len(ports) > 40  # spread out, so two homes made at once rarely pick the same


def test_a_port_someone_listens_on_is_never_chosen(monkeypatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        taken = listener.getsockname()[1]
        listener.listen()
        monkeypatch.setattr(paths, "_ephemeral_range", lambda: (taken + 1, 60999))
        # The range below is [10000, taken]: the listened port is the likeliest pick left.
        monkeypatch.setattr(paths.random, "SystemRandom",
                            lambda: type("R", (), {"randrange": lambda self, a, b: taken})())
        port = paths.free_port()
    assert port != taken
