"""A service's log lines: one JSON object each, the same fields whether structlog or the
standard library logged it, in the order they were logged."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
import structlog
from chassis.logging import StdoutLogger, configure_logging
from opentelemetry.sdk.trace import TracerProvider


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_structlog_and_stdlib_lines_carry_the_same_fields_in_order(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("orders", "orders-1")
    log = structlog.get_logger("orders.saga")
    with TracerProvider().get_tracer("t").start_as_current_span("request") as span:
        log.info("order_placed", order_id="o-1", lines=2)
        logging.getLogger("uvicorn.error").warning("a %s line", "stdlib")
        log.warning("order_slow", seconds=1.5)
    first, second, third = lines(capsys)
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert first.pop("timestamp").endswith("Z")
    assert first == {"order_id": "o-1", "lines": 2, "event": "order_placed", "level": "info",
                     "logger": "orders.saga", "service": "orders", "instance": "orders-1",
                     "trace_id": trace_id,
                     "span_id": format(span.get_span_context().span_id, "016x")}
    assert second["event"] == "a stdlib line" and second["level"] == "warning"
    assert second["logger"] == "uvicorn.error" and second["trace_id"] == trace_id
    assert (third["event"], third["level"], third["service"]) == ("order_slow", "warning",
                                                                  "orders")


def test_the_level_holds_for_loggers_already_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    log = structlog.get_logger("chassis.test")
    configure_logging("cart", "cart-1", "warning")
    log.info("hidden")
    log.debug("hidden too")
    log.warning("shown")
    configure_logging("cart", "cart-1", "info")
    log.info("shown now")
    log.debug("still hidden")
    assert [line["event"] for line in lines(capsys)] == ["shown", "shown now"]


def test_an_exception_is_rendered_into_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("payments", "payments-1")
    log = structlog.get_logger("payments")
    try:
        raise ValueError("bad card")
    except ValueError:
        log.exception("capture_failed", payment_id="p-1")
    log.log(logging.ERROR, "loop_crashed")
    [failed, crashed] = lines(capsys)
    assert failed["level"] == "error" and failed["payment_id"] == "p-1"
    assert "ValueError: bad card" in failed["exception"]
    assert (crashed["event"], crashed["level"]) == ("loop_crashed", "error")


def test_a_line_goes_to_stdout_as_it_is_at_the_write(capsys: pytest.CaptureFixture[str]) -> None:
    # Tests and tools swap sys.stdout after the logger was made: the line follows it.
    StdoutLogger("x").msg('{"event":"one"}')
    assert capsys.readouterr().out == '{"event":"one"}\n'
