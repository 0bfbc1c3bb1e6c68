"""Mermaid flowchart of a saga definition, drawn from ``SagaDefinition.describe()``.

Steps run top to bottom (a step whose receiver forwards the next step's command is drawn
with a bold edge: the orchestrator awaits both together, ADR 0053); each failure (or a
deadline after the last resend) leads into the compensation chain of the steps already
done, drawn in reverse order.
"""

from __future__ import annotations

import re
from typing import Any


def _id(prefix: str, name: str) -> str:
    return prefix + re.sub(r"\W", "_", name)


def _label(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def mermaid(described: dict[str, Any]) -> str:
    steps = described["steps"]
    lines = ["flowchart TD", f"    start([{_label('start ' + described['name'])}])"]
    lines.append("    completed([COMPLETED])")
    lines.append("    compensated([COMPENSATED])")
    for step in steps:
        sid = _id("s_", step["name"])
        lines.append(f"    {sid}[{_label(step['name'] + ': ' + step['command'])}]")
    lines.append(f"    start --> {_id('s_', steps[0]['name'])}")
    for i, step in enumerate(steps):
        sid = _id("s_", step["name"])
        after = _id("s_", steps[i + 1]["name"]) if i + 1 < len(steps) else "completed"
        success = " | ".join(step["success"])
        if step.get("forward"):
            lines.append(f"    {sid} == {_label(success + ': its receiver sends the next')} "
                         f"==> {after}")
        else:
            lines.append(f"    {sid} -- {_label(success)} --> {after}")
        for reply in step["failure"]:
            lines.append(f"    {sid} -. {_label(reply)} .-> {_undo_from(steps, i - 1)}")
        if step.get("forward"):
            continue  # timed out with the step it forwards to, drawn there
        head = step["sent_with"]
        timeout = (f"timed out: {steps[head]['chain_deadline_s']:g}s, then "
                   f"{steps[head]['max_resends']} resends each waiting twice as long")
        # A timed-out command may still have taken effect: undo this step too (and the
        # steps sent with it).
        lines.append(f"    {_id('s_', steps[head]['name'])} -. {_label(timeout)} .-> "
                     f"{_undo_from(steps, i)}")
    for i in range(len(steps) - 1, -1, -1):
        step = steps[i]
        if step["compensation"] is None:
            continue
        cid = _id("c_", step["name"])
        lines.append(f"    {cid}[/{_label('undo ' + step['name'] + ': ' + step['compensation'])}/]")
        lines.append(f"    {cid} --> {_undo_from(steps, i - 1)}")
    return "\n".join(lines) + "\n"


def _undo_from(steps: list[dict[str, Any]], i: int) -> str:
    """The first compensation to run when steps[0..i] are done: the latest with one."""
    for j in range(i, -1, -1):
        if steps[j]["compensation"] is not None:
            return _id("c_", steps[j]["name"])
    return "compensated"
