"""Card numbers as they may enter a service: 12-19 ASCII digits that pass the Luhn check.

Every place a card number enters (orders, cart, payments) validates it with ``CardNumber``,
so a typo is a 422 before anything is stored or sent, and a look-alike such as full-width
digits (U+FF10-U+FF19) never reaches the provider. ``\\d`` in a pydantic pattern is not enough:
pydantic's regex engine matches any Unicode digit with it.

Error messages never quote the number: validation errors end up in problem+json answers
and logs.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field
from stdnum import luhn

CARD_PATTERN = r"^[0-9]{12,19}$"
_ASCII_CARD = re.compile(CARD_PATTERN, re.ASCII)


def is_card_number(value: str) -> bool:
    """12-19 ASCII digits with a valid Luhn check digit."""
    return bool(_ASCII_CARD.fullmatch(value)) and luhn.is_valid(value)


def _luhn(value: str) -> str:
    if not luhn.is_valid(value):
        raise ValueError("the card number's check digit is wrong (Luhn)")
    return value


CardNumber = Annotated[
    str,
    Field(pattern=CARD_PATTERN, description="12-19 digits (0-9) with a valid Luhn check "
                                            "digit; test cards: 4242424242424242 approves, "
                                            "4000000000000002 declines"),
    AfterValidator(_luhn),
]


__all__ = ["CARD_PATTERN", "CardNumber", "is_card_number"]
