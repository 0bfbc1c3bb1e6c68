"""The console's web server: OTLP/HTTP in, the web UI and its JSON API out, on loopback.

Routes (every page has its JSON twin under ``/api``):
  POST /v1/traces, /v1/logs, /v1/metrics   OTLP/HTTP (ingest token)
  GET  /login?token=…                      trade the console token for a session cookie
  GET  / (resources), /traces, /traces/{id}, /logs, /sagas, /sagas/{id}, /dead-letters
  POST /resources/{name}/restart, /dead-letters/{seq}/replay   (CSRF token)
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
import structlog
from aiohttp import web

from mercato.console import otlp
from mercato.console.auth import COOKIE, Auth
from mercato.console.logtail import LogIndexer
from mercato.console.prom import Prom
from mercato.console.resources import Resources
from mercato.console.sagas import STATES, Sagas
from mercato.console.store import (
    Store,
    connect,
    search_logs,
    search_traces,
    trace_spans,
    traces_of_order,
)
from mercato.runtime import commands, prometheus
from mercato.runtime.control import read_state
from mercato.runtime.paths import Home

log = structlog.get_logger("mercato.console")

MAX_OTLP_BYTES = 16 << 20
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = ("/health", "/login", "/static/", "/v1/")


def problem(status: int, title: str, detail: str = "") -> web.Response:
    return web.json_response({"type": "about:blank", "title": title, "status": status,
                              "detail": detail}, status=status,
                             content_type="application/problem+json")


class Console:
    def __init__(self, home: Home, store: Store, auth: Auth) -> None:
        self.home = home
        self.store = store
        self.auth = auth
        self.resources = Resources(home)
        self.sagas = Sagas(home)
        self.indexer = LogIndexer(home.logs_dir, store)
        # Readers get their own connection: a search never waits behind an ingest batch.
        self.reader = connect(store.path)
        self.reader_lock = asyncio.Lock()
        self.counters = {"spans": 0, "log_records": 0, "metric_points": 0, "rejected": 0}
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined)
        self.templates.filters["dt"] = lambda ts: time.strftime(
            "%H:%M:%S", time.localtime(float(ts))) if ts else ""
        self.templates.filters["mb"] = lambda b: f"{b / 1048576:.0f} MB" if b else ""
        self.templates.filters["pretty"] = lambda v: json.dumps(v, indent=1, default=str)
        self.nc: Any = None
        from mercato.runtime.telemetry import PROMETHEUS_USER, prometheus_password

        self._prom = Prom(None, aiohttp.BasicAuth(PROMETHEUS_USER, prometheus_password(home)))
        try:
            self.scale = prometheus.for_scale()
        except ValueError:
            self.scale = 1.0

    # -- plumbing ------------------------------------------------------------------------

    async def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async with self.reader_lock:
            return await asyncio.to_thread(fn, self.reader, *args, **kwargs)

    def page(self, request: web.Request, name: str, **ctx: Any) -> web.Response:
        html = self.templates.get_template(name).render(
            csrf=self.auth.csrf, path=request.path, **ctx)
        return web.Response(text=html, content_type="text/html", headers={
            "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                       "frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store"})

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/" or not request.path.startswith(PUBLIC):
            bearer = request.headers.get("Authorization")
            if bearer is not None:
                if not self.auth.api_bearer_ok(bearer):
                    return problem(401, "Unauthorized", "the bearer token is not this home's "
                                   "console token")
            elif not self.auth.session_ok(request.cookies.get(COOKIE)):
                if request.path.startswith("/api/") or request.method != "GET":
                    return problem(401, "Unauthorized", "log in with the URL `mercato up` "
                                   "printed")
                return self.page(request, "login.html", error=None)
            elif request.method == "POST":
                form = await request.post() if request.content_type.endswith(
                    "form-urlencoded") else {}
                token = request.headers.get("X-CSRF-Token") or form.get("csrf")
                if not self.auth.csrf_ok(str(token) if token is not None else None):
                    return problem(403, "Forbidden", "missing or wrong CSRF token")
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            # The broker or the orders database is down or refused us: say so, not 500.
            log.warning("console_backend_unavailable", path=request.path,
                        error=f"{type(exc).__name__}: {exc}")
            return problem(503, "Service Unavailable",
                           f"{type(exc).__name__}: {exc}"[:300])

    def who(self, request: web.Request) -> str:
        how = "api" if request.headers.get("Authorization") else "console"
        return f"{getpass.getuser()} via {how} from {request.remote}"

    # -- OTLP in ---------------------------------------------------------------------------

    async def _otlp(self, request: web.Request) -> tuple[bytes, str] | web.Response:
        if not self.auth.ingest_ok(request.headers.get("Authorization")):
            self.counters["rejected"] += 1
            return problem(401, "Unauthorized", "OTLP needs this home's ingest token")
        if (request.content_length or 0) > MAX_OTLP_BYTES:
            return problem(413, "Payload Too Large", f"at most {MAX_OTLP_BYTES} bytes")
        body = await request.read()
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            import gzip

            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                return problem(400, "Bad Request", "not gzip")
        return body, request.content_type

    def _otlp_ok(self, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            return web.json_response({})
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def v1_traces(self, request: web.Request) -> web.Response:
        got = await self._otlp(request)
        if isinstance(got, web.Response):
            return got
        try:
            spans = otlp.spans(*got)
        except otlp.BadPayload as exc:
            return problem(400, "Bad Request", str(exc))
        await asyncio.to_thread(self.store.add_spans, spans)
        self.counters["spans"] += len(spans)
        return self._otlp_ok(request)

    async def v1_logs(self, request: web.Request) -> web.Response:
        got = await self._otlp(request)
        if isinstance(got, web.Response):
            return got
        try:
            lines = otlp.logs(*got)
        except otlp.BadPayload as exc:
            return problem(400, "Bad Request", str(exc))
        await asyncio.to_thread(self.store.add_logs, lines)
        self.counters["log_records"] += len(lines)
        return self._otlp_ok(request)

    async def v1_metrics(self, request: web.Request) -> web.Response:
        got = await self._otlp(request)
        if isinstance(got, web.Response):
            return got
        try:
            self.counters["metric_points"] += otlp.metric_points(*got)
        except otlp.BadPayload as exc:
            return problem(400, "Bad Request", str(exc))
        return self._otlp_ok(request)

    # -- login, health -------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **self.counters})

    async def login(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            token = str((await request.post()).get("token") or "")
        else:
            token = request.query.get("token", "")
        if not self.auth.login_ok(token):
            resp = self.page(request, "login.html", error="That is not this home's console "
                             "token: use the URL `mercato up` printed.")
            resp.set_status(401)
            return resp
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(COOKIE, self.auth.session, httponly=True, samesite="Strict",
                        path="/")
        raise resp

    # -- resources -----------------------------------------------------------------------

    async def resources_page(self, request: web.Request) -> web.Response:
        return self.page(request, "resources.html", snap=self.resources.snapshot())

    async def api_resources(self, request: web.Request) -> web.Response:
        return web.json_response(self.resources.snapshot())

    async def restart(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        command = request.match_info.get("command", "restart")
        if command not in commands.COMMANDS:
            return problem(404, "Not Found", f"commands are {', '.join(commands.COMMANDS)}")
        try:
            answer = await commands.send(self.home.supervisor_socket, command, name)
        except OSError as exc:
            return problem(503, "Service Unavailable", f"the supervisor did not answer: {exc}")
        await asyncio.to_thread(self.store.audit, self.who(request), command,
                                {"process": name, "answer": answer})
        if not answer.get("ok"):
            return problem(409, "Conflict", str(answer.get("error")))
        if request.headers.get("Accept", "").startswith("application/json"):
            return web.json_response(answer)
        raise web.HTTPSeeOther("/")

    # -- traces --------------------------------------------------------------------------

    def _trace_filters(self, request: web.Request) -> dict[str, Any]:
        q = request.query
        min_ms: float | None = None
        if q.get("min_ms"):
            try:
                min_ms = float(q["min_ms"])
            except ValueError:
                raise web.HTTPBadRequest(
                    text=json.dumps({"title": "Bad Request", "status": 400,
                                     "detail": "min_ms must be a number of milliseconds"}),
                    content_type="application/problem+json") from None
        status = q.get("status") or None
        if status not in (None, "ok", "error"):
            raise web.HTTPBadRequest(
                text=json.dumps({"title": "Bad Request", "status": 400,
                                 "detail": "status is ok or error"}),
                content_type="application/problem+json")
        return {"service": q.get("service") or None, "operation": q.get("operation") or None,
                "status": status, "min_ms": min_ms, "order_id": q.get("order_id") or None}

    async def traces_page(self, request: web.Request) -> web.Response:
        filters = self._trace_filters(request)
        rows = await self.read(search_traces, **filters)
        return self.page(request, "traces.html", rows=rows, f=filters)

    async def api_traces(self, request: web.Request) -> web.Response:
        return web.json_response({"traces": await self.read(
            search_traces, **self._trace_filters(request))})

    async def _trace(self, trace_id: str) -> list[dict[str, Any]]:
        trace_id = trace_id.lower()
        if len(trace_id) != 32 or any(c not in "0123456789abcdef" for c in trace_id):
            raise web.HTTPBadRequest(text=json.dumps(
                {"title": "Bad Request", "status": 400,
                 "detail": "a trace id is 32 hex digits"}),
                content_type="application/problem+json")
        spans: list[dict[str, Any]] = await self.read(trace_spans, trace_id)
        return spans

    async def trace_page(self, request: web.Request) -> web.Response:
        spans = await self._trace(request.match_info["trace_id"])
        return self.page(request, "trace.html", trace_id=request.match_info["trace_id"],
                         rows=waterfall(spans))

    async def api_trace(self, request: web.Request) -> web.Response:
        spans = await self._trace(request.match_info["trace_id"])
        if not spans:
            return problem(404, "Not Found", "no such trace (dropped, not sampled, or not "
                           "exported yet)")
        return web.json_response({"trace_id": request.match_info["trace_id"].lower(),
                                  "spans": spans})

    async def api_order_trace(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        try:
            oid = uuid.UUID(order_id)
        except ValueError:
            return problem(400, "Bad Request", "an order id is a UUID")
        trace_ids: list[str] = []
        with contextlib.suppress(OSError, asyncio.TimeoutError, Exception):
            saga = await self.sagas.one(oid)
            if saga and saga.get("trace_id"):
                trace_ids.append(saga["trace_id"])
        for tid in await self.read(traces_of_order, str(oid)):
            if tid not in trace_ids:
                trace_ids.append(tid)
        if not trace_ids:
            return problem(404, "Not Found", f"no trace of order {oid}")
        spans = await self.read(trace_spans, trace_ids[0])
        return web.json_response({"order_id": str(oid), "trace_id": trace_ids[0],
                                  "other_traces": trace_ids[1:], "spans": spans})

    # -- logs ----------------------------------------------------------------------------

    def _log_filters(self, request: web.Request) -> dict[str, Any]:
        q = request.query
        return {"service": q.get("service") or None, "level": q.get("level") or None,
                "trace_id": q.get("trace") or None, "text": q.get("q") or None,
                "source": q.get("source") or None}

    async def logs_page(self, request: web.Request) -> web.Response:
        f = self._log_filters(request)
        rows = await self.read(search_logs, **f)
        return self.page(request, "logs.html", rows=rows, f=f)

    async def api_logs(self, request: web.Request) -> web.Response:
        return web.json_response({"logs": await self.read(search_logs,
                                                           **self._log_filters(request))})

    # -- sagas ---------------------------------------------------------------------------

    async def _saga_list(self, request: web.Request) -> tuple[str | None, list[Any], Any]:
        status = request.query.get("status") or None
        if status is not None and status not in STATES:
            raise web.HTTPBadRequest(text=json.dumps(
                {"title": "Bad Request", "status": 400,
                 "detail": f"status is one of {', '.join(STATES)}"}),
                content_type="application/problem+json")
        return status, await self.sagas.list(status), await self.sagas.counts()

    async def sagas_page(self, request: web.Request) -> web.Response:
        status, rows, counts = await self._saga_list(request)
        return self.page(request, "sagas.html", rows=rows, counts=counts, status=status,
                         states=STATES)

    async def api_sagas(self, request: web.Request) -> web.Response:
        _, rows, counts = await self._saga_list(request)
        return web.json_response({"counts": counts, "sagas": rows})

    async def _saga(self, request: web.Request) -> dict[str, Any]:
        try:
            sid = uuid.UUID(request.match_info["saga_id"])
        except ValueError:
            raise web.HTTPBadRequest(text=json.dumps(
                {"title": "Bad Request", "status": 400, "detail": "a saga id is a UUID"}),
                content_type="application/problem+json") from None
        saga = await self.sagas.one(sid)
        if saga is None:
            raise web.HTTPNotFound(text=json.dumps(
                {"title": "Not Found", "status": 404, "detail": f"no saga {sid}"}),
                content_type="application/problem+json")
        return saga

    async def saga_page(self, request: web.Request) -> web.Response:
        saga = await self._saga(request)
        total = max([e["elapsed_ms"] for e in saga["events"]] + [1.0])
        return self.page(request, "saga.html", saga=saga, total=total)

    async def api_saga(self, request: web.Request) -> web.Response:
        return web.json_response(await self._saga(request))

    # -- dead letters --------------------------------------------------------------------

    async def _js(self) -> Any:
        if self.nc is None or self.nc.is_closed:
            import nats

            from mercato.runtime.broker import connect_options

            # The operator's identity, as `mercato dlq` has: the console does what it does.
            self.nc = await nats.connect(f"nats://127.0.0.1:{self.home.ports().nats}",
                                         connect_timeout=3, name="mercato-console",
                                         max_reconnect_attempts=3,
                                         **connect_options(self.home))
        return self.nc.jetstream()

    async def _letters(self) -> list[dict[str, Any]]:
        from chassis.messaging.dlq import list_dead_letters

        return [letter_dict(d) for d in await list_dead_letters(await self._js(), None, 200)]

    async def dlq_page(self, request: web.Request) -> web.Response:
        audit = await self.read(lambda db: [dict(r) for r in db.execute(
            "SELECT * FROM audit ORDER BY id DESC LIMIT 20")])
        return self.page(request, "dlq.html", letters=await self._letters(), audit=audit)

    async def api_dlq(self, request: web.Request) -> web.Response:
        return web.json_response({"dead_letters": await self._letters()})

    async def replay(self, request: web.Request) -> web.StreamResponse:
        from chassis.messaging.dlq import replay_dead_letter

        try:
            seq = int(request.match_info["seq"])
        except ValueError:
            return problem(400, "Bad Request", "a dead letter is named by its sequence number")
        letter = await replay_dead_letter(await self._js(), seq)
        if letter is None:
            return problem(404, "Not Found", f"no dead letter {seq}")
        await asyncio.to_thread(self.store.audit, self.who(request), "replay_dead_letter",
                                {"seq": seq, "consumer": letter.consumer,
                                 "subject": letter.subject, "type": letter.message_type,
                                 "message_id": letter.message_id})
        log.info("dead_letter_replayed", seq=seq, consumer=letter.consumer,
                 who=self.who(request))
        if request.headers.get("Accept", "").startswith("application/json"):
            return web.json_response({"replayed": seq, "consumer": letter.consumer})
        raise web.HTTPSeeOther("/dead-letters")

    async def api_audit(self, request: web.Request) -> web.Response:
        rows = await self.read(lambda db: [dict(r) for r in db.execute(
            "SELECT * FROM audit ORDER BY id DESC LIMIT 200")])
        return web.json_response({"audit": rows})

    # -- metrics and alerts (the supervisor's Prometheus) ----------------------------------

    def prom(self) -> Prom:
        url = ((read_state(self.home) or {}).get("urls") or {}).get("prometheus")
        if self._prom.base_url != url:
            self._prom.base_url = url
        return self._prom

    async def metrics_page(self, request: web.Request) -> web.Response:
        return self.page(request, "metrics.html")

    async def api_metrics(self, request: web.Request) -> web.Response:
        try:
            return web.json_response({"panels": await self.prom().panels()})
        except (LookupError, aiohttp.ClientError, TimeoutError) as exc:
            return problem(503, "Service Unavailable", str(exc))

    async def alerts_page(self, request: web.Request) -> web.Response:
        try:
            rules, error = await self.prom().alerts(), None
        except (LookupError, aiohttp.ClientError, TimeoutError) as exc:
            rules, error = [], str(exc)
        return self.page(request, "alerts.html", rules=rules, error=error, scale=self.scale)

    async def api_alerts(self, request: web.Request) -> web.Response:
        try:
            return web.json_response({"rules": await self.prom().alerts()})
        except (LookupError, aiohttp.ClientError, TimeoutError) as exc:
            return problem(503, "Service Unavailable", str(exc))

    # -- background ----------------------------------------------------------------------

    async def index_logs_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.indexer.pass_once)
            except Exception:
                log.exception("log_index_failed")
            await asyncio.sleep(1.0)

    async def prune_forever(self) -> None:
        while True:
            await asyncio.sleep(30.0)
            try:
                dropped = await asyncio.to_thread(self.store.prune)
                if dropped["traces"] or dropped["logs"]:
                    log.info("telemetry_pruned", **dropped)
            except Exception:
                log.exception("telemetry_prune_failed")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard], client_max_size=MAX_OTLP_BYTES)
        r = app.router
        r.add_post("/v1/traces", self.v1_traces)
        r.add_post("/v1/logs", self.v1_logs)
        r.add_post("/v1/metrics", self.v1_metrics)
        r.add_get("/health", self.health)
        r.add_route("*", "/login", self.login)
        r.add_get("/", self.resources_page)
        r.add_get("/api/resources", self.api_resources)
        r.add_post("/resources/{name}/{command}", self.restart)
        r.add_post("/api/resources/{name}/{command}", self.restart)
        r.add_get("/metrics", self.metrics_page)
        r.add_get("/api/metrics", self.api_metrics)
        r.add_get("/alerts", self.alerts_page)
        r.add_get("/api/alerts", self.api_alerts)
        r.add_get("/traces", self.traces_page)
        r.add_get("/traces/{trace_id}", self.trace_page)
        r.add_get("/api/traces", self.api_traces)
        r.add_get("/api/traces/{trace_id}", self.api_trace)
        r.add_get("/api/orders/{order_id}/trace", self.api_order_trace)
        r.add_get("/logs", self.logs_page)
        r.add_get("/api/logs", self.api_logs)
        r.add_get("/sagas", self.sagas_page)
        r.add_get("/sagas/{saga_id}", self.saga_page)
        r.add_get("/api/sagas", self.api_sagas)
        r.add_get("/api/sagas/{saga_id}", self.api_saga)
        r.add_get("/dead-letters", self.dlq_page)
        r.add_get("/api/dead-letters", self.api_dlq)
        r.add_post("/dead-letters/{seq}/replay", self.replay)
        r.add_post("/api/dead-letters/{seq}/replay", self.replay)
        r.add_get("/api/audit", self.api_audit)
        r.add_static("/static/", Path(__file__).parent / "static")
        return app


def letter_dict(d: Any) -> dict[str, Any]:
    return {"seq": d.sequence, "consumer": d.consumer, "subject": d.subject,
            "type": d.message_type, "message_id": d.message_id, "error": d.error,
            "deliveries": d.deliveries, "headers": d.headers,
            "body": d.data.decode("utf-8", errors="replace")[:4000]}


def waterfall(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans in tree order (children under their parent, by start) with their offset and
    width as a share of the trace, for the waterfall view."""
    if not spans:
        return []
    t0 = min(s["start_ns"] for s in spans)
    t1 = max(s["end_ns"] for s in spans)
    total = max(t1 - t0, 1)
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        parent = s["parent_id"] if s["parent_id"] in ids else None
        children.setdefault(parent, []).append(s)
    out: list[dict[str, Any]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x["start_ns"]):
            out.append({**s, "depth": depth,
                        "offset_pct": round(100 * (s["start_ns"] - t0) / total, 3),
                        "width_pct": max(round(100 * (s["end_ns"] - s["start_ns"]) / total,
                                               3), 0.2),
                        "error": s["status"] == 2})
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return out


async def serve(home: Home, port: int) -> None:
    from mercato.console.store import Bounds
    from mercato.runtime.telemetry import console_token, ingest_token

    store = Store(home.telemetry_db, Bounds.from_env())
    console = Console(home, store, Auth(console_token(home), ingest_token(home)))
    runner = web.AppRunner(console.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    log.log(logging.INFO, "console_listening", url=f"http://127.0.0.1:{port}/")
    tasks = [asyncio.create_task(console.index_logs_forever()),
             asyncio.create_task(console.prune_forever())]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for t in tasks:
        t.cancel()
    await runner.cleanup()
    await console.sagas.close()
    await console._prom.close()
    if console.nc is not None:
        with contextlib.suppress(Exception):
            await console.nc.close()
    store.close()
