"""The patterns the published schema gives identity's fields accept exactly what the domain
accepts: a client that follows the schema is never refused, and one the schema warns about
is (the API fuzzing in tests/api_fuzz relies on both)."""

from __future__ import annotations

import re
import string
import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st
from identity.domain.countries import ISO_3166_ALPHA2
from identity.domain.errors import IdentityError
from identity.domain.model import _PHONE, _POSTAL
from identity.domain.policy import check_new_password, clean_text
from identity.entrypoints import schemas

# The characters the rules are about, often, among everything else.
EDGES = " \t\n\r\x0b\x0c\x1c\x1f\x00\x7f\x85\x9f\xa0\u1680\u2000\u200a\u2028\u2029\u202a" \
        "\u202e\u202f\u205f\u2066\u2069\u3000\ufeffa0-+(). "
TEXT = st.text(st.one_of(st.sampled_from(EDGES), st.characters()), max_size=12)


def matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def accepted(rule: object, value: str) -> bool:
    try:
        rule(value)  # type: ignore[operator]
    except IdentityError:
        return False
    return True


@settings(max_examples=500)
@given(TEXT)
@example(" \x1c ")
@example("a\u2028b")
@example("\ufeff")
@example("\u202ex")
def test_single_and_optional_lines_are_clean_text(value: str) -> None:
    assert matches(schemas.SINGLE_LINE, value) == accepted(
        lambda v: clean_text(v, field="f", max_chars=1000), value)
    assert matches(schemas.OPTIONAL_LINE, value) == accepted(
        lambda v: clean_text(v, field="f", max_chars=1000, required=False), value)


@settings(max_examples=500)
@given(st.text(st.one_of(st.sampled_from(EDGES), st.characters()), min_size=8, max_size=20))
@example("        ")
@example("\u3000" * 8)
@example("pass\x7fword")
def test_password_pattern_is_the_password_policy(value: str) -> None:
    # The policy counts characters after NFKC; the schema counts them as sent.
    if unicodedata.normalize("NFKC", value) != value:
        return
    assert matches(schemas.PASSWORD, value) == accepted(check_new_password, value)


@settings(max_examples=500)
@given(st.text(st.sampled_from(string.ascii_letters + string.digits + " -\t.+()#"),
               max_size=24))
@example(" 04524 ")
@example("-1")
@example("a")
def test_postal_code_and_phone_patterns_are_the_domains(value: str) -> None:
    assert matches(schemas.POSTAL_CODE, value) == bool(_POSTAL.fullmatch(value.strip()))
    phone = value.strip()
    assert matches(schemas.PHONE, value) == (not phone or bool(_PHONE.fullmatch(phone)))


def test_country_pattern_is_the_assigned_codes_in_any_case() -> None:
    pairs = (a + b for a in string.ascii_letters for b in string.ascii_letters)
    assert {p for p in pairs if matches(schemas.COUNTRY, p)} == {
        p for p in (a + b for a in string.ascii_letters for b in string.ascii_letters)
        if p.upper() in ISO_3166_ALPHA2}
