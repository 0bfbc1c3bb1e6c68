"""A dependency that is briefly unavailable is a 503 with Retry-After, never a 500; a bug
still is a 500. Against a real PostgreSQL (and an address that refuses connections)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import asyncpg
import nats.errors
import nats.js.errors
import pytest
from chassis.app import ServiceContext, create_service_app
from chassis.errors import dependency_unavailable
from chassis.settings import ServiceSettings
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from mercato.testing.infra import PgServer
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

pytestmark = pytest.mark.integration

REFUSING_URL = "postgresql+asyncpg://probe:pw@127.0.0.1:1/probe"


class ProbeSettings(ServiceSettings):
    service_name: ClassVar[str] = "probe"


def _routes() -> APIRouter:
    router = APIRouter()

    async def run(request: Request, sql: str) -> dict[str, int]:
        ctx: ServiceContext = request.app.state.ctx
        async with ctx.require_db().unit_of_work() as uow:
            value = (await uow.session.execute(text(sql))).scalar_one()
        return {"value": value}

    @router.post("/query")
    async def query(request: Request) -> dict[str, int]:
        return await run(request, "SELECT 1")

    @router.post("/bug")
    async def bug(request: Request) -> dict[str, int]:
        return await run(request, "SELECT no_such_column FROM no_such_table")

    @router.post("/publish")
    async def publish() -> None:
        raise nats.errors.NoServersError

    @router.post("/missing-file")
    async def missing_file() -> None:
        open("/no/such/file")

    return router


@pytest.fixture
def refusing() -> Iterator[TestClient]:
    settings = ProbeSettings(database_url=REFUSING_URL, instance_id="probe-refused")
    with TestClient(create_service_app(settings, routers=[_routes()]),
                    raise_server_exceptions=False) as client:
        yield client


def _assert_unavailable(resp: object) -> None:
    assert resp.status_code == 503, resp.text  # type: ignore[attr-defined]
    assert resp.headers["Retry-After"] == "2"  # type: ignore[attr-defined]
    assert resp.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    assert body["status"] == 503 and body["title"] == "Service unavailable"
    assert "try again" in body["detail"]


def test_a_database_refusing_connections_is_503_with_retry_after(refusing: TestClient) -> None:
    _assert_unavailable(refusing.post("/query"))
    # Counted as what the client got, not as a 500.
    metrics = refusing.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/query",service="probe",status="503"} 1.0' \
        in metrics
    assert 'status="500"' not in metrics


def test_a_broker_that_cannot_be_reached_is_503_with_retry_after(refusing: TestClient) -> None:
    _assert_unavailable(refusing.post("/publish"))


def test_a_bug_is_still_a_500(refusing: TestClient, fresh_database: str) -> None:
    assert refusing.post("/missing-file").status_code == 500
    settings = ProbeSettings(database_url=fresh_database, instance_id="probe-bug")
    with TestClient(create_service_app(settings, routers=[_routes()]),
                    raise_server_exceptions=False) as client:
        resp = client.post("/bug")
        assert resp.status_code == 500
        assert resp.headers["content-type"] == "application/problem+json"
        assert "Retry-After" not in resp.headers


def test_connections_cut_by_a_database_restart_are_503_then_recover(
        fresh_database: str, pg_server: PgServer) -> None:
    settings = ProbeSettings(database_url=fresh_database, instance_id="probe-cut")
    with TestClient(create_service_app(settings, routers=[_routes()]),
                    raise_server_exceptions=False) as client:
        assert client.post("/query").json() == {"value": 1}
        # What a restart does to the pooled connections (they are "terminated by
        # administrator command"), without stopping the server the other tests share.
        pg_server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name = 'probe-cut'")
        _assert_unavailable(client.post("/query"))
        assert client.post("/query").json() == {"value": 1}  # a fresh connection


@pytest.mark.parametrize("exc", [
    ConnectionRefusedError(111, "Connect call failed"),
    OSError("Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 1)"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
    asyncpg.exceptions.AdminShutdownError("terminating connection"),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    PoolTimeoutError("QueuePool limit of size 10 overflow 10 reached"),
    TimeoutError(),
    nats.errors.TimeoutError(),
    nats.errors.ConnectionClosedError(),
    nats.js.errors.ServiceUnavailableError(),
], ids=repr)
def test_what_counts_as_a_dependency_being_unavailable(exc: BaseException) -> None:
    assert dependency_unavailable(exc)


@pytest.mark.parametrize("exc", [
    FileNotFoundError(2, "No such file or directory"),
    PermissionError(13, "Permission denied"),
    ValueError("bad"),
    KeyError("k"),
    asyncpg.exceptions.UndefinedTableError("relation does not exist"),
    asyncpg.exceptions.InvalidPasswordError("password authentication failed"),
    nats.errors.BadSubjectError(),
    nats.js.errors.NotFoundError(),
], ids=repr)
def test_what_does_not(exc: BaseException) -> None:
    assert not dependency_unavailable(exc)


def test_an_explicit_cause_counts_but_an_error_raised_while_handling_does_not() -> None:
    class Wrapped(Exception):
        pass

    try:
        raise Wrapped("could not reach the ledger") from ConnectionResetError()
    except Wrapped as exc:
        assert dependency_unavailable(exc)
    try:
        try:
            raise ConnectionResetError()
        except ConnectionResetError:
            raise ValueError("a bug in the fallback")  # noqa: B904 - the point of the test
    except ValueError as exc:
        assert not dependency_unavailable(exc)
