"""Card numbers: ASCII digits with a valid Luhn check digit, and errors that never quote one."""

from __future__ import annotations

import pytest
from chassis.cards import CardNumber, is_card_number
from pydantic import BaseModel, ValidationError

TEST_CARDS = ["4242424242424242", "4000000000000002", "4000000000009995", "4000000000000119",
              "5555555555554444", "378282246310005"]


def full_width(digits: str) -> str:
    """The same number in full-width digits (U+FF10-U+FF19), which str.isdigit() accepts."""
    return digits.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})


def arabic_indic(digits: str) -> str:
    return digits.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})


class Payment(BaseModel):
    card_number: CardNumber


@pytest.mark.parametrize("card", TEST_CARDS)
def test_the_test_cards_are_valid(card: str) -> None:
    assert is_card_number(card)
    assert Payment(card_number=card).card_number == card


@pytest.mark.parametrize("card", [
    full_width("4242424242424242"),  # str.isdigit() and pydantic's \d say yes to these
    arabic_indic("4242424242424242"),
    "4242424242424241",  # one digit off: the Luhn check fails
    "4242 4242 4242 4242", "42", "4" * 20, "", "424242424242424x",
])
def test_look_alikes_and_typos_are_refused_without_echoing_the_number(card: str) -> None:
    assert not is_card_number(card)
    with pytest.raises(ValidationError) as err:
        Payment(card_number=card)
    shown = str(err.value.errors(include_input=False, include_url=False))
    assert card not in shown or card == ""
