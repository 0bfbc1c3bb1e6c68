"""`mercato migrate`: the steps of the migration, decided here and carried out by writing
the flag file (the control plane renders it into the edge's routes within a pass).

Every step is recorded with the ACL's counters at that moment (``baseline.json``), so the
guard and `status` judge what happened since the last step, not since the ACL started.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mercato.migration import flags as flagfile
from mercato.migration.capabilities import CAPABILITIES, Capability, capability
from mercato.migration.guard import (
    Counters,
    Stats,
    Thresholds,
    Verdict,
    judge,
    parse_acl_metrics,
    since,
    stats,
)
from mercato.migration.routes import effective
from mercato.runtime import control
from mercato.runtime.paths import Home

APPLY_TIMEOUT_S = 10.0
# Capabilities whose data the sync keeps equal on both sides (ADR 0029, 0031).
SYNCED = ("catalog", "identity")
BACKFILL_POLL_S = 0.5


class MigrateError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Platform:
    running: bool
    acl_url: str | None
    applied_file: Path
    sync_url: str | None = None
    stock_url: str | None = None


def platform(home: Home) -> Platform:
    state = control.read_state(home) if control.running_pid(home) is not None else None
    urls = (state or {}).get("urls", {})
    return Platform(running=state is not None, acl_url=urls.get("acl"),
                    applied_file=home.envoy_dir / "migration-applied.json",
                    sync_url=urls.get("sync"), stock_url=urls.get("stock"))


def acl_counters(p: Platform) -> Counters | None:
    if p.acl_url is None:
        return None
    try:
        with urllib.request.urlopen(p.acl_url + "/metrics", timeout=3) as resp:  # noqa: S310
            return parse_acl_metrics(resp.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def acl_mismatches(p: Platform, cap: Capability, limit: int) -> list[dict[str, Any]]:
    if p.acl_url is None:
        raise MigrateError("the ACL is not running", "start the platform with the monolith: "
                           "mercato up --with legacy --detach")
    url = f"{p.acl_url}/acl/mismatches?capability={cap.name}"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310
            return list(json.loads(resp.read())["items"])[:limit]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise MigrateError(f"the ACL did not answer ({exc})") from exc


# -- the data sync (ADR 0029, 0031) ------------------------------------------------------------

def _sync_get(p: Platform, path: str, method: str = "GET") -> Any:
    if p.sync_url is None:
        raise MigrateError("the sync is not running", "start the platform with the monolith "
                           "and catalog: mercato up --with legacy --detach")
    request = urllib.request.Request(p.sync_url + path, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise MigrateError(f"the sync answered {exc.code} to {path}{_title(exc)}",
                           "mercato logs sync") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise MigrateError(f"the sync did not answer ({exc})", "mercato logs sync") from exc


def _title(exc: urllib.error.HTTPError) -> str:
    try:
        return f": {json.loads(exc.read())['title']}"
    except (ValueError, KeyError, TypeError, OSError):
        return ""


def sync_status(p: Platform) -> dict[str, Any] | None:
    try:
        return dict(_sync_get(p, "/sync/status"))
    except MigrateError:
        return None


def sync_lag(cap: Capability, doc: dict[str, Any] | None) -> str:
    """The status table's cell: lag each way, what waits, errors, conflicts."""
    if cap.name not in SYNCED:
        return "not synced yet"
    if doc is None:
        return "sync not running"
    doc = doc.get(cap.name)
    if doc is None:
        return "not kept in step by this sync"
    if not doc.get("armed"):
        return f"waiting for `mercato migrate backfill {cap.name}`"
    lag, backlog, errors = doc["lag_s"], doc["backlog"], doc["errors"]
    failed = sum(v for side in errors.values() for v in side.values())
    return (f"→svc {lag['legacy_to_services']:.1f} s ({backlog['legacy_to_services']:g}), "
            f"→legacy {lag['services_to_legacy']:.1f} s ({backlog['services_to_legacy']:g}), "
            f"{failed:g} errors, {doc['conflicts']} conflicts")


def sync_conflicts(p: Platform, limit: int) -> list[dict[str, Any]]:
    return list(_sync_get(p, f"/sync/conflicts?limit={limit}")["items"])


def _synced(name: str) -> Capability:
    cap = capability(name)
    if cap.name not in SYNCED:
        raise MigrateError(f"the sync keeps only {', '.join(SYNCED)} in step; {cap.name} "
                           "has no backfill yet")
    return cap


def backfill(home: Home, name: str,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Starts (or joins) the sync's backfill and follows it to its end. Cut short (the sync
    killed, Ctrl-C), it goes on from its checkpoint when started again."""
    cap = _synced(name)
    p = platform(home)
    path = f"/sync/backfill?capability={cap.name}"
    _sync_get(p, path, method="POST")
    while True:
        state = _sync_get(p, path)
        if progress is not None and "total" in state:
            progress(int(state.get("done", 0)), int(state["total"]))
        if state.get("state") == "done":
            return dict(state)
        if state.get("state") == "failed":
            raise MigrateError(f"the backfill stopped: {state.get('error')}",
                               "fix the cause, then run it again: it resumes")
        if state.get("state") == "idle":  # the sync restarted meanwhile: start it again
            _sync_get(p, path, method="POST")
        time.sleep(BACKFILL_POLL_S)


# -- baselines -----------------------------------------------------------------------------------

def _baseline_file(home: Home) -> Path:
    return home.root / "migration" / "baseline.json"


def _baselines(home: Home) -> dict[str, Counters]:
    try:
        doc = json.loads(_baseline_file(home).read_text())
        return {cap: {tuple(k): v for *k, v in rows} for cap, rows in doc.items()}
    except (OSError, ValueError, TypeError):
        return {}


def _record_step(home: Home, cap: Capability, counters: Counters | None) -> None:
    if counters is None:
        return
    docs = _baselines(home)
    docs[cap.name] = {k: v for k, v in counters.items() if k[1:2] == (cap.name,)}
    path = _baseline_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({c: [[*k, v] for k, v in rows.items()]
                                for c, rows in docs.items()}, indent=1) + "\n")


def window(home: Home, cap: Capability, counters: Counters | None) -> Stats | None:
    if counters is None:
        return None
    return stats(since(counters, _baselines(home).get(cap.name, {})), cap.name)


# -- steps ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    capability: str
    share: flagfile.Share
    verdict: Verdict
    applied: bool | None  # None: no platform running (applied at its next start)
    # Checkout only, with the stock split running: the split's pass at the new share (the
    # units each side owns, as in its status), False if none came in time, None otherwise.
    stock: dict[str, Any] | bool | None = None


# The capability whose share the stock split follows (ADR 0034), and how long a step of it
# waits for the split's pass at the new share.
STOCK_SPLIT_CAPABILITY = "checkout"
STOCK_SPLIT_TIMEOUT_S = 15.0


def _flags_path(home: Home) -> Path:
    return flagfile.flag_file(home.root)


def _current(home: Home, cap: Capability) -> flagfile.Share:
    try:
        return flagfile.shares(flagfile.read_flags(_flags_path(home)))[cap.name]
    except flagfile.FlagFileError as exc:
        raise MigrateError(str(exc), "fix or remove the flag file; without it everything "
                           "routes to the monolith") from exc


def _apply(home: Home, cap: Capability, changes: dict[str, Any], verdict: Verdict,
           p: Platform, counters: Counters | None) -> Step:
    since = time.time()
    written = flagfile.write_flags(_flags_path(home), {flagfile.key(cap.name, k): v
                                                       for k, v in changes.items()})
    share = flagfile.shares(written)[cap.name]
    _record_step(home, cap, counters)
    applied = _wait_applied(p, share) if p.running else None
    stock = None
    if applied and cap.name == STOCK_SPLIT_CAPABILITY and stock_split(p) is not None:
        stock = _wait_stock_split(p, share.percent, since)
    return Step(cap.name, share, verdict, applied, stock)


def _wait_applied(p: Platform, share: flagfile.Share) -> bool:
    want = {"percent": share.percent, "shadow": share.shadow, "finished": share.finished}
    deadline = time.monotonic() + APPLY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            doc = json.loads(p.applied_file.read_text())
            if doc["shares"].get(share.capability) == want:
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    return False


def _wait_stock_split(p: Platform, percent: int, since: float) -> dict[str, Any] | bool:
    """Waits for the stock split's first pass begun after the flag was written: once it has
    run, each side owns its part of the units at the new share, and a checkout the edge now
    sends to a side finds the units that side should have. The pass after a share's change
    usually comes within a second; without it the edge serves the new share on the old
    split, and a side may answer out of stock meanwhile."""
    deadline = time.monotonic() + STOCK_SPLIT_TIMEOUT_S
    while time.monotonic() < deadline:
        doc = stock_split(p) or {}
        last = doc.get("last_pass") or {}
        if last.get("percent") == percent and float(last.get("started_at", 0)) >= since \
                and "error" not in last:
            return dict(last)
        time.sleep(0.1)
    return False


def shadow(home: Home, name: str, percent: int) -> Step:
    cap = capability(name)
    if not cap.shadow_reads:
        raise MigrateError(f"{cap.name} is not shadowed: its requests write, or its two "
                           "sides answer different things by design (ADR 0035)",
                           "shift it in small steps instead")
    if percent and not cap.translated:
        raise MigrateError(f"the anti-corruption layer cannot answer {cap.name}'s legacy paths "
                           "from the services yet, so there is nothing to compare")
    p = platform(home)
    return _apply(home, cap, {"shadow": percent}, Verdict(True), p, acl_counters(p))


def shift(home: Home, name: str, percent: int, limits: Thresholds = Thresholds()) -> Step:
    cap = capability(name)
    current = _current(home, cap)
    if current.finished:
        raise MigrateError(f"{cap.name} has finished moving", "`mercato migrate rollback "
                           f"{cap.name}` first if it must go back")
    p = platform(home)
    counters = acl_counters(p)
    judged = window(home, cap, counters)
    if percent > current.percent and judged is None:
        raise MigrateError("cannot judge the shift: the ACL's metrics cannot be read",
                           "is the platform running with the monolith? mercato up --with "
                           "legacy --detach")
    verdict = judge(cap, current.percent, percent, judged or Stats(), limits)
    if not verdict.ok:
        return Step(cap.name, current, verdict, None)
    return _apply(home, cap, {"percent": percent}, verdict, p, counters)


def rollback(home: Home, name: str) -> Step:
    """All of the capability's traffic back to the monolith; its shadow keeps running, so
    the comparison goes on while the fault is looked into."""
    cap = capability(name)
    p = platform(home)
    return _apply(home, cap, {"percent": 0, "finished": False}, Verdict(True), p,
                  acl_counters(p))


def finish(home: Home, name: str) -> Step:
    cap = capability(name)
    current = _current(home, cap)
    if current.percent != 100:
        raise MigrateError(f"{cap.name} serves {current.percent} % from the services; finish "
                           "needs 100 %", f"mercato migrate shift {cap.name} --percent 100")
    p = platform(home)
    return _apply(home, cap, {"finished": True, "shadow": 0}, Verdict(True), p,
                  acl_counters(p))


# -- the stock split (ADR 0034) -----------------------------------------------------------------

def stock_split(p: Platform) -> dict[str, Any] | None:
    """The split's status from its process (units each side owns, transfers by state), or
    None when it is not running."""
    if p.stock_url is None:
        return None
    try:
        with urllib.request.urlopen(p.stock_url + "/stock/status", timeout=3) as resp:  # noqa: S310
            return dict(json.loads(resp.read()))
    except (urllib.error.URLError, OSError, ValueError):
        return None


# -- status --------------------------------------------------------------------------------------

def status(home: Home) -> dict[str, Any]:
    p = platform(home)
    counters = acl_counters(p)
    synced = sync_status(p)
    split = stock_split(p)
    path = _flags_path(home)
    evaluated = flagfile.evaluate(path)
    client = flagfile.client_for(path)
    rows = []
    for cap in CAPABILITIES:
        share = evaluated[cap.name]
        w = window(home, cap, counters)
        total = stats(counters, cap.name) if counters is not None else None
        rows.append({
            "capability": cap.name, "title": cap.title, "translated": cap.translated,
            "percent": share.percent, "shadow": share.shadow, "finished": share.finished,
            "routes_to": _routes_to(cap, share),
            "since_last_step": None if w is None else _stats_json(w),
            "since_acl_start": None if total is None else _stats_json(total),
            "sync_lag": sync_lag(cap, synced),
            "sync": synced.get(cap.name) if synced is not None and cap.name in SYNCED
            else None,
            "stock_split": split if cap.name == "checkout" else None,
        })
    flag_rows = [{"flag": k, "value": d.value, "reason": str(d.reason),
                  "error": d.error_message}
                 for k in sorted(flagfile.defaults()) for d in [_details(client, k)]]
    return {"platform_running": p.running, "acl": p.acl_url, "acl_reachable":
            counters is not None, "flag_file": str(path), "capabilities": rows,
            "stock_split": split,
            "flags": flag_rows}


def _details(client: Any, flag: str) -> Any:
    if flag.endswith(".finished"):
        return client.get_boolean_details(flag, False)
    return client.get_integer_details(flag, 0)


def _routes_to(cap: Capability, share: flagfile.Share) -> str:
    percent, _ = effective(cap, share)  # what the edge applies, not only what the file says
    if percent == 100:
        return "services"
    if percent == 0:
        return "legacy"
    return f"services {percent} % / legacy {100 - percent} %"


def _stats_json(s: Stats) -> dict[str, Any]:
    return {"comparisons": s.comparisons, "mismatches": s.mismatches,
            "mismatch_rate": s.mismatch_rate, "skipped": s.skipped,
            "legacy": {"requests": s.requests.get("legacy", 0),
                       "errors": s.errors.get("legacy", 0)},
            "services": {"requests": s.requests.get("services", 0),
                         "errors": s.errors.get("services", 0)}}
