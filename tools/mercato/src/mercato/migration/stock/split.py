"""How many of a product's free units each side should own, given the checkout share.

At 0 % every free unit belongs to the monolith, at 100 % to the services; in between the
services get ``round(free x percent / 100)``, but a side with a share above 0 % is never
left with fewer than ``floor`` units while there are enough for both (a 5 % side would
otherwise own nothing of a product with 10 units, and its customers could never buy it).
Only free units count: the services' reserved units are promised to orders and never move.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_FLOOR = 1


def services_target(free: int, percent: int, floor: int = DEFAULT_FLOOR) -> int:
    """The free units the services should own of ``free`` at this share."""
    if free < 0 or not 0 <= percent <= 100 or floor < 0:
        raise ValueError(f"free {free}, percent {percent}, floor {floor}")
    if percent == 0:
        return 0
    if percent == 100:
        return free
    raw = (free * percent * 2 + 100) // 200  # round half up, in integers
    # Both sides serve: each gets its floor first, as far as the units go, the larger share
    # first when there are not enough for both.
    services_floor = min(floor, free) if percent >= 50 else min(floor, free - min(floor, free))
    legacy_floor = min(floor, free - services_floor)
    return max(services_floor, min(raw, free - legacy_floor))


@dataclass(frozen=True, slots=True)
class Move:
    """Units to move now: ``to_services`` > 0 from the monolith, < 0 back to it."""

    to_services: int


def plan(legacy_free: int, services_free: int, percent: int,
         floor: int = DEFAULT_FLOOR) -> Move:
    """The move that brings the two sides to the share. The monolith's units are all free
    (it has no reservations: its checkout takes stock in its own transaction)."""
    if legacy_free < 0 or services_free < 0:
        raise ValueError(f"negative free units: {legacy_free}, {services_free}")
    target = services_target(legacy_free + services_free, percent, floor)
    return Move(target - services_free)
