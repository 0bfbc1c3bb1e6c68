"""Base classes of every contract: the name, version, producer and subject travel with it."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Contract(BaseModel):
    # Unknown fields are ignored: a newer producer may add optional fields that an older
    # consumer does not know yet, and that must not break it.
    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: ClassVar[str] = "contract"
    owner: ClassVar[str] = ""  # the service whose stream carries it
    version: ClassVar[int] = 1

    @classmethod
    def message_type(cls) -> str:
        return f"{cls.__name__}.v{cls.version}"

    @classmethod
    def subject(cls) -> str:
        return f"{cls.owner}.{cls.kind}s.{snake(cls.__name__)}"

    def to_payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Event(Contract):
    """Something that happened (past tense), published by its owner."""

    kind: ClassVar[str] = "event"


class Command(Contract):
    """Something asked of its owner (imperative), sent to the owner's work queue."""

    kind: ClassVar[str] = "command"
