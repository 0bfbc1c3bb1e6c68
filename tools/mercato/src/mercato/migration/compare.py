"""The shadow comparison: both sides' answers to one read, in the legacy shape, compared
after the known differences are normalised away; mismatches kept (bounded) with both bodies.

Known differences, and why each is not a mismatch:
- headers (Date, ETag, Server, request ids): never compared, only status and body;
- error bodies: the two sides word their problems differently; the same status is the same
  answer;
- money amounts: ``"12900"`` and ``"12900.00"`` are the same amount;
- ``in_stock``: stock moves under live orders between the two reads; inventory is
  compared by the sync's own checks (issue 15 item 4), not here;
- ``parent_id`` of categories: the catalog's categories are flat;
- order of lists of records: compared by id (the two databases break ties differently);
- one page of a longer list: the monolith pages its products by id, the catalog by name, so
  the same page holds different records on each side. A page is compared on its paging
  (``total``, ``page``, ``page_size``) and on the records both pages hold; a record missing
  on one side shows in ``total``, and every record is compared in full by its own route;
- a product switched off: the monolith still shows it (``active: false``), the catalog no
  longer serves a discontinued product (404). Clients of the legacy path see a 404 once
  the services serve it: the runbook says so.

Identity (``/shop/me``, ``/shop/addresses``; ADR 0032):
- a record carrying ``services_id`` (customers, addresses) is that record on both sides: it
  is matched and ordered by it, and its legacy ``id`` is not compared (a record born in the
  services has none on the services side until the sync records the pair, while the
  monolith numbered it on arrival; for a record born in the monolith, the id is derived
  from the same UUID);
- ``email`` in any case: identity keeps addresses lower-cased, the monolith as typed, and
  both sign in case-insensitively;
- ``is_admin``: the monolith's back-office flag, which the services' roles do not carry
  (and a token the ACL exchanged is never an admin's).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from mercato.migration.translate import Answer

IGNORED_KEYS = frozenset({"in_stock", "parent_id", "is_admin"})
MAX_DIFFERENCES = 10


def route_label(path: str) -> str:
    """The route family of a path, for metric labels: ids become ``{id}`` (a label per
    product would grow without bound)."""
    return "/".join("{id}" if re.fullmatch(r"[0-9]+|[0-9a-fA-F-]{32,36}", part) else part
                    for part in path.split("/"))


def _money(value: dict[str, Any]) -> dict[str, Any] | None:
    if set(value) != {"amount", "currency"}:
        return None
    try:
        return {"amount": format(Decimal(str(value["amount"])).normalize(), "f"),
                "currency": value["currency"]}
    except InvalidOperation:
        return None


def normalise(body: Any) -> Any:
    if isinstance(body, dict):
        money = _money(body)
        if money is not None:
            return money
        keyed = body.get("services_id") is not None
        return {k: v.lower() if k == "email" and isinstance(v, str) else normalise(v)
                for k, v in body.items()
                if k not in IGNORED_KEYS and not (keyed and k == "id")}
    if isinstance(body, list):
        items = [normalise(v) for v in body]
        if items and all(isinstance(i, dict) and "services_id" in i for i in items):
            return sorted(items, key=lambda i: str(i["services_id"]))
        if items and all(isinstance(i, dict) and "id" in i for i in items):
            return sorted(items, key=lambda i: (str(type(i["id"])), str(i["id"])))
        return items
    return body


def differences(a: Any, b: Any, at: str = "$") -> Iterator[str]:
    """JSON paths where two normalised bodies differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                yield f"{at}.{k}: only on the {'services' if k in b else 'legacy'} side"
            else:
                yield from differences(a[k], b[k], f"{at}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{at}: {len(a)} items on the legacy side, {len(b)} on the services side"
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            yield from differences(x, y, f"{at}[{i}]")
    elif a != b:
        yield f"{at}: {a!r} (legacy) != {b!r} (services)"


def _records(body: Any) -> list[dict[str, Any]] | None:
    items = body.get("items") if isinstance(body, dict) else None
    if isinstance(items, list) and all(isinstance(i, dict) and "id" in i for i in items):
        return items
    return None


def _common_records(a: Any, b: Any) -> tuple[Any, Any]:
    """Two pages of a list longer than a page, cut to the records both hold (see the module
    docstring); anything else as it is."""
    ia, ib = _records(a), _records(b)
    if ia is None or ib is None:
        return a, b
    if not any(isinstance(p.get("total"), int) and p["total"] > len(items)
               for p, items in ((a, ia), (b, ib))):
        return a, b  # the whole list on one page: every record must be on both sides
    both = {i["id"] for i in ia} & {i["id"] for i in ib}
    return ({**a, "items": [i for i in ia if i["id"] in both]},
            {**b, "items": [i for i in ib if i["id"] in both]})


def compare(legacy: Answer, services: Answer) -> list[str]:
    """Empty when the answers agree after normalisation; otherwise what differs."""
    if legacy.error or services.error:
        return [f"no answer: legacy {legacy.error or legacy.status}, "
                f"services {services.error or services.status}"]
    if (legacy.status == 200 and services.status == 404 and isinstance(legacy.body, dict)
            and legacy.body.get("active") is False):
        return []  # switched off: shown inactive by the monolith, gone from the catalog
    if legacy.status != services.status:
        return [f"status {legacy.status} (legacy) != {services.status} (services)"]
    if legacy.status >= 300:
        return []
    found: list[str] = []
    a, b = _common_records(normalise(legacy.body), normalise(services.body))
    for d in differences(a, b):
        found.append(d)
        if len(found) == MAX_DIFFERENCES:
            break
    return found


@dataclass(frozen=True)
class Mismatch:
    at: float
    capability: str
    route: str
    path: str
    primary: str
    legacy: Answer
    services: Answer
    differences: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        def side(a: Answer) -> dict[str, Any]:
            return {"status": a.status, "error": a.error, "body": a.body}
        return {"at": self.at, "capability": self.capability, "route": self.route,
                "path": self.path, "primary": self.primary, "legacy": side(self.legacy),
                "services": side(self.services), "differences": list(self.differences)}


class MismatchLog:
    """The last ``keep`` mismatches with both bodies; older ones fall off (the counters
    keep the totals)."""

    def __init__(self, keep: int = 100) -> None:
        self._items: deque[Mismatch] = deque(maxlen=keep)

    def add(self, capability: str, path: str, primary: str, legacy: Answer,
            services: Answer, found: list[str]) -> Mismatch:
        m = Mismatch(time.time(), capability, route_label(path), path, primary, legacy,
                     services, tuple(found))
        self._items.append(m)
        return m

    def recent(self, capability: str | None = None) -> list[dict[str, Any]]:
        return [m.as_json() for m in reversed(self._items)
                if capability is None or m.capability == capability]
