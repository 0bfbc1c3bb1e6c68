"""Statement spans cost CPU on every query: recorded only when something exports them."""

from __future__ import annotations

from chassis.tracing import instrument_app
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy import create_engine, event


def _has_span_hooks(engine) -> bool:
    return any(event.contains(engine, "before_cursor_execute", fn)
               for fn in list(engine.dispatch.before_cursor_execute))


class _Async:  # what instrument_app reads from an AsyncEngine
    def __init__(self) -> None:
        self.sync_engine = create_engine("sqlite://")


def test_statement_spans_only_when_exporting() -> None:
    quiet, exported = _Async(), _Async()
    instrument_app(None, quiet, exporting=False)
    assert not _has_span_hooks(quiet.sync_engine)
    try:
        instrument_app(None, exported, exporting=True)
        assert _has_span_hooks(exported.sync_engine)
    finally:
        SQLAlchemyInstrumentor().uninstrument()
