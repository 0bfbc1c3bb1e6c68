"""OTLP/HTTP request bodies turned into the store's rows, through the OTLP protobuf
definitions (``opentelemetry-proto``): binary protobuf as the SDK and Envoy send it, or the
protocol's JSON encoding."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from mercato.console.store import LogLine, Span

_LEVELS = {1: "trace", 5: "debug", 9: "info", 13: "warning", 17: "error", 21: "critical"}


class BadPayload(ValueError):
    pass


def parse(kind: type[Message], body: bytes, content_type: str) -> Any:
    msg = kind()
    try:
        if content_type.split(";")[0].strip() == "application/json":
            json_format.Parse(body.decode(), msg, ignore_unknown_fields=True)
        else:
            msg.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
        raise BadPayload(f"not an OTLP {kind.__name__}: {exc}") from exc
    return msg


def value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs if isinstance(kv, KeyValue)}


def spans(body: bytes, content_type: str) -> list[Span]:
    req = parse(ExportTraceServiceRequest, body, content_type)
    out: list[Span] = []
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        service = str(resource.get("service.name") or "unknown")
        instance = resource.get("service.instance.id")
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(Span(
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_id=s.parent_span_id.hex() or None, service=service,
                    instance=str(instance) if instance else None, name=s.name,
                    kind=int(s.kind), start_ns=int(s.start_time_unix_nano),
                    end_ns=int(s.end_time_unix_nano), status=int(s.status.code),
                    status_message=s.status.message or None,
                    attributes=attributes(s.attributes),
                    events=[{"name": e.name, "time_ns": int(e.time_unix_nano),
                             "attributes": attributes(e.attributes)} for e in s.events],
                    links=[{"trace_id": ln.trace_id.hex(), "span_id": ln.span_id.hex(),
                            "attributes": attributes(ln.attributes)} for ln in s.links]))
    return out


def logs(body: bytes, content_type: str) -> list[LogLine]:
    req = parse(ExportLogsServiceRequest, body, content_type)
    out: list[LogLine] = []
    for rl in req.resource_logs:
        service = str(attributes(rl.resource.attributes).get("service.name") or "unknown")
        for sl in rl.scope_logs:
            for r in sl.log_records:
                text = value(r.body)
                ts = (r.time_unix_nano or r.observed_time_unix_nano) / 1e9
                level = _LEVELS.get(r.severity_number - (r.severity_number - 1) % 4, "info")
                line = json.dumps({"event": text, "level": level, "service": service,
                                   **attributes(r.attributes)}, default=str)
                out.append(LogLine(ts=ts, source=f"otlp:{service}", service=service,
                                   level=level, trace_id=r.trace_id.hex() or None,
                                   event=str(text)[:500], line=line))
    return out


def metric_points(body: bytes, content_type: str) -> int:
    """Metrics are accepted (a service may send them) and counted, not kept: the console
    reads the services' Prometheus endpoints instead."""
    req = parse(ExportMetricsServiceRequest, body, content_type)
    return sum(len(sm.metrics) for rm in req.resource_metrics for sm in rm.scope_metrics)
