"""Versioned commands and events: the only thing services share.

Models hold primitives only (str, int, bool, decimals as strings, ISO datetimes as strings),
never a service's domain types. A published version never changes incompatibly: add an
optional field, or publish ``v2`` beside ``v1``. ``python -m contracts export`` writes the
JSON Schemas under ``libs/contracts/schemas/``; the test suite fails on a breaking change.
"""

from contracts.base import Command, Contract, Event

__all__ = ["Command", "Contract", "Event"]
