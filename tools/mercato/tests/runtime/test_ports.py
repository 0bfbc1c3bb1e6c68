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


def draws(monkeypatch, *ports: int) -> None:  # type: ignore[no-untyped-def]
    """The random picks free_port makes, in order."""
    left = list(ports)
    monkeypatch.setattr(paths.random, "SystemRandom",
                        lambda: type("R", (), {"randrange": lambda self, a, b: left.pop(0)})())


def test_a_port_handed_to_a_process_that_has_not_bound_it_is_never_handed_again(
        tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The monolith's port is chosen when the edge starts (its routes name it) and bound
    seconds later; a service started meanwhile once drew the same one (a CI run's monolith
    then could not bind, and the catalog answered its health probe)."""
    from mercato.runtime.supervisor import Child, Supervisor

    monkeypatch.setattr(paths, "_ephemeral_range", lambda: (32768, 60999))
    # Whether some other program on the machine listens on 20001-20004 is not the point here
    # (the test above is about listeners): a CI run's platform once did, and the scripted
    # draws ran out.
    monkeypatch.setattr(paths, "port_is_free", lambda port, host="127.0.0.1": True)
    sup = Supervisor(paths.Home(tmp_path), services={"catalog": "catalog"}, scale={},
                     with_=["legacy"])
    draws(monkeypatch, 20001)
    sup.legacy_port = sup.free_port()
    assert sup.legacy_port == 20001
    catalog = sup._service_spec("catalog", "catalog", "catalog-1")
    draws(monkeypatch, 20001, 20002)
    first = Child(spec=catalog, log_path=str(tmp_path / "catalog-1.log"))
    first.port = catalog.port()
    assert first.port == 20002
    sup.children["catalog-1"] = first
    # A second instance avoids both the monolith's port and the first instance's.
    draws(monkeypatch, 20001, 20002, 20003)
    assert catalog.port() == 20003
    # So do the engines' and the edge's ports, kept in the home's config.
    draws(monkeypatch, sup.ports.postgres, sup.ports.nats, 20004)
    assert sup.free_port() == 20004


def test_a_health_check_answered_by_another_process_on_the_childs_port_is_not_ready(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Another program that took the port before the child bound it answers the probe; the
    child is not ready until it is the one listening there (a CI run's monolith was marked
    ready so, by the catalog that held its port, and then could not bind)."""
    import asyncio
    import os
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import aiohttp
    from mercato.runtime.supervisor import Child, Spec, Supervisor

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)  # this test process listens
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    sup = Supervisor(paths.Home(tmp_path), services={}, scale={})
    spec = Spec(name="legacy", kind="service", argv=lambda _p: [], ready=sup._service_ready,
                port=lambda: port)

    async def ready(pid: int) -> bool:
        sup.http = aiohttp.ClientSession()
        try:
            child = Child(spec=spec, log_path=str(tmp_path / "legacy.log"))
            child.pid, child.port = pid, port
            return await sup._service_ready(child)
        finally:
            await sup.http.close()

    try:
        assert asyncio.run(ready(other.pid)) is False  # answered, but not by the child
        assert asyncio.run(ready(os.getpid())) is True
    finally:
        other.kill()
        other.wait()
        server.shutdown()
