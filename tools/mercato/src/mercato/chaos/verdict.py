"""What makes a chaos scenario fail, and the report's text. Pure: the tests feed it results.

A scenario fails when, after the fault and a drain, any of these holds:
- ``mercato check`` finds a violation (money, stock, sagas, outboxes, read model, emails);
- an accepted order is not terminal (stuck) or no longer exists (lost);
- a client saw a 500 (a fault is 503 + Retry-After at worst) or a 401 (every token the
  chaos clients hold is valid: they sign in again long before expiry);
- a probe during a broker fault (catalog read, sign-in, order placement) was not 2xx;
- the shop did not recover (a new order accepted and terminal) within the bound;
- the fault itself could not be injected, or a poison message was not dead-lettered.
Connection errors and 503s while a process is down are reported, not failed: they are the
honest answers the platform owes a client then.
"""

from __future__ import annotations

from typing import Any


def status_key(http_status: int | None, error: str | None) -> str:
    """``"503"``, or ``"connection error (ClientConnectorError)"`` when no answer came."""
    if http_status is not None:
        return str(http_status)
    kind = (error or "unknown").split(":", 1)[0].strip() or "unknown"
    return f"connection error ({kind})"


def count(keys: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in keys:
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


def _all_statuses(result: dict[str, Any]) -> dict[str, dict[str, int]]:
    where = {"orders": result.get("client_errors") or {},
             "recovery canary": (result.get("canary") or {}).get("statuses") or {}}
    for probe, statuses in (result.get("probes") or {}).items():
        where[f"probe {probe}"] = statuses
    return where


def failures(result: dict[str, Any]) -> list[str]:
    """Why the scenario failed; empty when it passed (or was skipped)."""
    if result.get("skipped"):
        return []
    check = result.get("check") or {}
    # A violation an earlier scenario (or the platform before the run) left is reported
    # there; this scenario answers for the new ones.
    violations = check["new"] if "new" in check else check.get("violations") or []
    if result.get("baseline"):
        return [f"mercato check before the run: {len(violations)} violation(s): " + "; ".join(
            f"{v['invariant']} ({v['subject']})" for v in violations[:3])] if violations else []
    why: list[str] = []
    if result.get("fault_error"):
        why.append(f"the fault could not be injected: {result['fault_error']}")
    orders = result.get("orders") or {}
    if orders.get("stuck"):
        why.append(f"{orders['stuck']} order(s) stuck (accepted, not terminal)")
    if orders.get("lost"):
        why.append(f"{orders['lost']} order(s) lost (accepted, then not found)")
    for where, statuses in _all_statuses(result).items():
        if statuses.get("500"):
            why.append(f"{statuses['500']}: 500 ({where})")
        if statuses.get("401"):
            why.append(f"{statuses['401']}: 401 for a valid token ({where})")
    for probe, statuses in (result.get("probes") or {}).items():
        bad = {k: v for k, v in statuses.items() if not k.startswith("2")
               and k not in ("500", "401")}
        if bad:
            why.append(f"probe {probe} not 2xx during the fault: "
                       + ", ".join(f"{k}: {v}" for k, v in bad.items()))
    if result.get("recovered_s") is None and not result.get("fault_error"):
        why.append("did not recover (no new order accepted and terminal) within the bound")
    missing = (result.get("fault") or {}).get("not_dead_lettered")
    if missing:
        why.append("not dead-lettered: " + ", ".join(missing))
    if violations:
        why.append(f"mercato check: {len(violations)} new violation(s): " + "; ".join(
            f"{v['invariant']} ({v['subject']})" for v in violations[:3]))
    return why


def _fmt_statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in statuses.items()) or "-"


def report_lines(report: dict[str, Any]) -> list[str]:
    """The whole report as plain text (what --report saves and the closing note quotes)."""
    lines = [f"mercato chaos at {report['at']}: {len(report['scenarios'])} scenario(s), "
             f"{report['config']['rate']:g} orders/s, took {report['took_s']:.0f} s",
             f"machine: {report['machine']}", ""]
    for r in report["scenarios"]:
        head = f"{r['name']}: {r['what']}"
        if r.get("baseline"):
            found = (r.get("check") or {}).get("violations") or []
            lines += [f"{head}: " + ("clean" if not found else f"{len(found)} violation(s)")]
            lines += [f"  {v['invariant']}: {v['subject']}: {v['detail']}" for v in found[:10]]
            lines.append("")
            continue
        if r.get("skipped"):
            lines += [f"{head}\n  SKIPPED: {r['skipped']}", ""]
            continue
        o = r.get("orders") or {}
        why = failures(r)
        lines.append(f"{head}\n  {'FAIL' if why else 'pass'} in {r.get('took_s', 0):.0f} s")
        lines.append(f"  orders sent / accepted / terminal / stuck / lost: {o.get('sent', 0)} / "
                     f"{o.get('accepted', 0)} / {o.get('terminal', 0)} / {o.get('stuck', 0)} / "
                     f"{o.get('lost', 0)}; outcomes: "
                     + (", ".join(f"{k} {v}" for k, v in (o.get("outcomes") or {}).items())
                        or "-"))
        lines.append(f"  client-visible answers other than 202: "
                     f"{_fmt_statuses(r.get('client_errors') or {})}")
        rec = r.get("recovered_s")
        after = "NOT within the bound" if rec is None else (
            f"after {rec:.1f} s from the fault's start "
            f"({max(0.0, rec - (r.get('fault_s') or 0.0)):.1f} s after its end)")
        lines.append(f"  recovered (new order accepted and terminal) {after}"
                     f"; fault: {r.get('fault') or r.get('fault_error')}")
        for probe, statuses in (r.get("probes") or {}).items():
            lines.append(f"  probe {probe} during the fault: {_fmt_statuses(statuses)}")
        check = r.get("check") or {}
        violations = check.get("violations") or []
        new = {(v["invariant"], v["subject"]) for v in check.get("new", violations)}
        lines.append(f"  mercato check: {'clean' if not violations else ''}"
                     + "; ".join(f"{v['invariant']}: {v['subject']}: {v['detail']}"
                                 + ("" if (v["invariant"], v["subject"]) in new
                                    else " (left by an earlier scenario)")
                                 for v in violations[:10]))
        lines += [f"  ✘ {w}" for w in why]
        lines.append("")
    n = sum(1 for r in report["scenarios"] if not r.get("baseline"))
    lines[0] = lines[0].replace(f"{len(report['scenarios'])} scenario(s)", f"{n} scenario(s)")
    failed = [r["name"] for r in report["scenarios"] if failures(r)]
    skipped = [r["name"] for r in report["scenarios"] if r.get("skipped")]
    lines.append(f"verdict: {'FAIL: ' + ', '.join(failed) if failed else 'pass'}"
                 + (f" ({len(skipped)} skipped: {', '.join(skipped)})" if skipped else ""))
    return lines
