"""``mercato release SERVICE``: a new version of one service beside the running one, traffic
shifted at the edge, promoted or rolled back on its metrics (see docs/deploy.md, "Releases")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import click
import typer

from mercato.cli.common import HomeOpt, err, fail, home_flag, out, running_home
from mercato.release.analysis import Thresholds
from mercato.release.gate import contracts_gate
from mercato.release.run import Plan, Release, ReleaseFailed, canary_steps
from mercato.runtime import control


def _parse_steps(raw: str | None) -> list[int] | None:
    if raw is None:
        return None
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        fail(f"--steps expects percentages separated by commas (like 10,50,100), got {raw!r}",
             code=2)


def _ask(question: str) -> bool:
    """Typer's prompt; Ctrl-C or end of input there is a "no" (the release rolls back)
    rather than an exit that would leave the new instances running."""
    try:
        return bool(typer.confirm(question, default=True))
    except (typer.Abort, click.exceptions.Abort, EOFError):
        return False


def register(app: typer.Typer) -> None:
    @app.command()
    def release(
        service: Annotated[str, typer.Argument(help="The service to release (e.g. catalog).")],
        canary: Annotated[int | None, typer.Option(
            help="Canary: the first step's share of traffic, in percent (default 10).",
            show_default=False)] = None,
        steps: Annotated[str | None, typer.Option(
            help="Canary: the steps' shares, e.g. 10,50,100 (100 is always the last).",
            show_default=False)] = None,
        blue_green: Annotated[bool, typer.Option(
            "--blue-green", help="Start a full new set, switch all traffic at once once it "
            "is healthy, keep the old set until --finish (or --rollback).")] = False,
        rollback: Annotated[bool, typer.Option(
            "--rollback", help="Send all traffic back to the old instances and stop the "
            "new ones.")] = False,
        finish: Annotated[bool, typer.Option(
            "--finish", help="End a blue-green release: stop the old instances.")] = False,
        auto: Annotated[bool, typer.Option(
            "--auto", help="Go through the steps without asking before each.")] = False,
        source: Annotated[Path | None, typer.Option(
            help="A directory put first on the new instances' PYTHONPATH, holding the "
            "version to release (a copy of the service's package); default: the working "
            "tree.", show_default=False)] = None,
        instances: Annotated[int | None, typer.Option(
            help="New instances to start (default: as many as run now, so a promotion keeps "
            "the service's size).", show_default=False)] = None,
        window: Annotated[float, typer.Option(
            help="Seconds each step is watched before the next.")] = 30.0,
        poll: Annotated[float, typer.Option(help="Seconds between metric scrapes.")] = 1.0,
        max_error_rate: Annotated[float, typer.Option(
            help="Error rate (5xx, 0-1) the new instances may have whatever the old "
            "ones'.")] = 0.01,
        error_ratio: Annotated[float, typer.Option(
            help="... or up to the old instances' error rate times this.")] = 2.0,
        max_p95_ms: Annotated[float, typer.Option(
            help="p95 latency the new instances may have whatever the old ones'.")] = 500.0,
        latency_ratio: Annotated[float, typer.Option(
            help="... or up to the old instances' p95 times this.")] = 1.5,
        min_requests: Annotated[int, typer.Option(
            help="Requests the new instances need in a window to judge it.")] = 20,
        home: HomeOpt = None,
    ) -> None:
        """Release a new version of SERVICE: canary (default) or blue-green, gated on the
        contracts check, judged on the instances' error rate and latency, rolled back by
        itself when they do not hold."""
        modes = [m for m, on in (("--canary/--steps", canary is not None or steps is not None),
                                 ("--blue-green", blue_green), ("--rollback", rollback),
                                 ("--finish", finish)) if on]
        if len(modes) > 1:
            fail(f"choose one of {', '.join(modes)}", code=2)
        h = running_home(home)
        state = control.read_state(h) or {}
        known = {p.get("service") for p in (state.get("processes") or {}).values()
                 if p.get("kind") == "service"}
        if service not in known:
            fail(f"no service {service!r} runs here",
                 f"services: {', '.join(sorted(s for s in known if s))}", code=2)
        if window <= 0 or poll <= 0 or min_requests < 0:
            fail("--window and --poll must be more than 0, --min-requests at least 0", code=2)
        if instances is not None and not 1 <= instances <= 16:
            fail("--instances must be from 1 to 16", code=2)
        limits = Thresholds(max_error_rate=max_error_rate, error_ratio=error_ratio,
                            max_p95_s=max_p95_ms / 1000, latency_ratio=latency_ratio,
                            min_requests=min_requests)
        try:
            weights = (100,) if blue_green else canary_steps(
                10 if canary is None else canary, _parse_steps(steps))
        except ValueError as exc:
            fail(str(exc), code=2)
        plan = Plan(service=service, steps=weights, blue_green=blue_green,
                    instances=instances,
                    source=source.resolve() if source else None, window_s=window,
                    poll_s=poll, limits=limits)
        confirm = None if auto else _ask
        runner = Release(h, plan, say=lambda line: out.print(line, markup=False),
                         confirm=confirm)
        under_way = (state.get("releases") or {}).get(service)
        if rollback or finish:
            if under_way is None:
                fail(f"no release of {service} is under way")
            try:
                if rollback:
                    answer = asyncio.run(runner.rollback())
                    out.print(f"{service} rolled back: traffic on "
                              f"{', '.join(answer['instances'])}; stopped "
                              f"{', '.join(answer['stopped'])}")
                else:
                    asyncio.run(runner.finish())
                    out.print(f"{service} released: {', '.join(under_way['new'])} serve all "
                              "of its traffic")
            except ReleaseFailed as exc:
                fail(str(exc))
            return
        if under_way is not None:
            fail(f"a release of {service} is already under way",
                 f"end it first: mercato release {service} --rollback (or --finish)"
                 f"{home_flag(h)}")
        if source is not None:
            module = service  # each service's package carries its name
            if not (source / module / "__init__.py").is_file():
                fail(f"--source {source} holds no {module} package ({module}/__init__.py)",
                     f"point it at a copy of services/{service}/src", code=2)
        gate = contracts_gate(plan.source)
        if not gate.ok:
            err.print(gate.output, markup=False)
            fail("the contracts check failed: the new version would break a published "
                 "contract, and both versions share the streams while the release runs",
                 "fix the contract (or publish a new version of it) and release again")
        out.print(f"contracts: {gate.output.splitlines()[-1] if gate.output else 'ok'}",
                  markup=False)
        steps_text = "blue-green" if blue_green else " → ".join(f"{w} %" for w in weights)
        out.print(f"releasing {service}: {steps_text}", markup=False)
        try:
            message = asyncio.run(runner.run())
        except ReleaseFailed as exc:
            fail(f"release of {service} {'rolled back' if exc.rolled_back else 'failed'}: "
                 f"{exc}")
        out.print(message, markup=False)
