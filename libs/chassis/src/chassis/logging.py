"""structlog JSON logs with service, instance and the current trace/span ids.

Standard-library loggers (uvicorn, SQLAlchemy, alembic) are routed through the same
processors so a service writes one JSON object per line, whoever logged it.

structlog's own events (every ``structlog.get_logger(...)`` of the services and the
chassis) do not go through the standard library: routed through ``logging`` as before, a
line cost ~22 µs of CPU (two ``LogRecord``s, the handler's lock, a formatter) against ~7 µs
written directly, and an order logs ~15 lines across the services (ADR 0049). Both write to
``sys.stdout`` as it is at the time of the write, one line each, so they interleave in order.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from opentelemetry import trace

# The level structlog's own events must reach (configure_logging sets it; read per event, so
# a later configuration holds for loggers already in use).
_threshold = logging.INFO


def _add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    return event


def _orjson_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "warn": logging.WARNING, "error": logging.ERROR, "exception": logging.ERROR,
           "critical": logging.CRITICAL, "fatal": logging.CRITICAL}


def _below_threshold(_: Any, method: str,
                     event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if _LEVELS.get(method, logging.INFO) < _threshold:
        raise structlog.DropEvent
    return event


class StdoutLogger:
    """Writes each rendered event as one line to ``sys.stdout``, flushed, as the standard
    library's stream handler does; ``name`` is the name it was asked for by."""

    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name

    def msg(self, message: str) -> None:
        out = sys.stdout
        out.write(message + "\n")
        out.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _stdout_logger(*args: Any) -> StdoutLogger:
    return StdoutLogger(str(args[0]) if args else "")


def configure_logging(service: str, instance: str, level: str = "info") -> None:
    """Configure structlog and stdlib logging for this process (idempotent)."""
    global _threshold
    static = {"service": service, "instance": instance}

    def add_static(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        for key, value in static.items():
            event.setdefault(key, value)
        return event

    # After the level and the logger's name, as the standard library path added them.
    tail: list[Any] = [
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_static,
        _add_trace_ids,
    ]
    _threshold = _LEVELS.get(level.lower(), logging.INFO)
    structlog.configure(
        processors=[_below_threshold, structlog.contextvars.merge_contextvars,
                    structlog.processors.add_log_level, structlog.stdlib.add_logger_name,
                    *tail, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(serializer=_orjson_dumps)],
        logger_factory=_stdout_logger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars,
                           structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           *tail],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(serializer=_orjson_dumps)],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "sqlalchemy.engine", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
