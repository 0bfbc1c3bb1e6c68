"""identity's public JSON shapes (the API contract in DESIGN.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from identity.domain.countries import ISO_3166_ALPHA2
from identity.domain.errors import IdentityError
from identity.domain.model import Address, User
from identity.domain.policy import (
    EMAIL_MAX_CHARS,
    check_name,
    check_new_password,
    normalise_email,
)


def _domain_rule(rule: Any) -> AfterValidator:
    # Runs the domain's own check so the API and the CLI refuse exactly the same input;
    # a ValueError becomes a field-located 422 problem.
    def check(value: str) -> str:
        try:
            return str(rule(value))
        except IdentityError as exc:
            raise ValueError(str(exc)) from None

    return AfterValidator(check)


# The domain's rules as JSON Schema patterns (ECMA 262), so the published schema accepts
# exactly what the service does; the domain functions above stay the validation, and
# tests/unit/test_schema_patterns.py checks each pattern against its rule.
# Python's str.strip() whitespace, and the characters clean_text refuses inside a text.
_VISIBLE_SPACE = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f\x85" + _VISIBLE_SPACE
_CC = r"\x00-\x1f\x7f-\x9f"
_CONTROL = _CC + r"\u2028\u2029\u202a-\u202e\u2066-\u2069"


def _trimmed(core: str) -> str:
    """``core`` with any whitespace around it, which the domain trims."""
    return rf"^[{_SPACE}]*{core}[{_SPACE}]*$"


# policy.clean_text: not empty once trimmed, no control characters or line breaks inside.
_TEXT = rf"[^{_CONTROL}{_SPACE}](?:[^{_CONTROL}]*[^{_CONTROL}{_SPACE}])?"
SINGLE_LINE = _trimmed(_TEXT)
# The same when the field may be left blank (it is then stored as null).
OPTIONAL_LINE = _trimmed(f"(?:{_TEXT})?")
# policy.check_new_password: no control characters, not only spaces.
PASSWORD = rf"^[^{_CC}]*[^{_CC}{_VISIBLE_SPACE}][^{_CC}]*$"
# domain.model._POSTAL and _PHONE once trimmed; a blank phone means none.
POSTAL_CODE = _trimmed(r"(?:[A-Za-z0-9][A-Za-z0-9 -]{0,18}[A-Za-z0-9]|[A-Za-z0-9])")
PHONE = _trimmed(r"(?:\+?[0-9][0-9 ().-]{3,30}[0-9])?")


def _any_case(letter: str) -> str:
    return f"{letter}{letter.lower()}"


# The assigned ISO 3166-1 alpha-2 codes in any case (stored upper-cased), by first letter.
COUNTRY = "^(?:" + "|".join(
    f"[{_any_case(first)}]"
    f"[{''.join(_any_case(code[1]) for code in sorted(ISO_3166_ALPHA2) if code[0] == first)}]"
    for first in sorted({code[0] for code in ISO_3166_ALPHA2})) + ")$"


def _pattern(pattern: str) -> dict[str, Any]:
    return {"pattern": pattern}


# policy.normalise_email takes a dot-atom mailbox @ a DNS name: JSON Schema's "email" format
# says as much (a pattern would need a look-ahead for the mailbox's 64 characters, which
# makes generating examples from the schema very slow). At most 254 characters as sent.
Email = Annotated[str, Field(max_length=EMAIL_MAX_CHARS, examples=["ann@example.com"],
                             json_schema_extra={"format": "email"}),
                  _domain_rule(normalise_email)]
NewPassword = Annotated[str, Field(min_length=8, max_length=128,
                                   json_schema_extra=_pattern(PASSWORD)),
                        _domain_rule(check_new_password)]
Name = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra=_pattern(SINGLE_LINE)),
                 _domain_rule(check_name)]
Line = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra=_pattern(SINGLE_LINE))]


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email
    password: NewPassword
    name: Name


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str


class MeOut(UserOut):
    roles: list[str]


def me_json(user: User) -> dict[str, Any]:
    return {"id": str(user.id), "email": user.email, "name": user.name, "roles": user.role_names}


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, no secret
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str = Field(description="single use: each refresh returns a new one")


class ExchangedTokenOut(BaseModel):
    """RFC 8693 §2.2.1: an access token only, never a refresh token."""

    access_token: str
    issued_token_type: Literal["urn:ietf:params:oauth:token-type:access_token"] = \
        "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a type URI
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, no secret
    expires_in: int = Field(description="seconds until the access token expires")


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Line = Field(description="who receives the parcel")
    line1: Line
    line2: Annotated[str, Field(max_length=200, json_schema_extra=_pattern(OPTIONAL_LINE))] \
        | None = None
    city: Annotated[str, Field(min_length=1, max_length=100,
                               json_schema_extra=_pattern(SINGLE_LINE))]
    postal_code: Annotated[str, Field(min_length=1, max_length=20,
                                      json_schema_extra=_pattern(POSTAL_CODE))]
    country: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$",
                                  json_schema_extra=_pattern(COUNTRY),
                                  description="ISO 3166-1 alpha-2, e.g. KR (any case)")]
    phone: Annotated[str, Field(max_length=32, json_schema_extra=_pattern(PHONE))] | None = None


class AddressOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str
    phone: str | None


class AddressListOut(BaseModel):
    items: list[AddressOut]


def address_json(address: Address) -> dict[str, Any]:
    return {"id": str(address.id), "user_id": str(address.user_id), "name": address.name,
            "line1": address.line1, "line2": address.line2, "city": address.city,
            "postal_code": address.postal_code, "country": address.country,
            "phone": address.phone}


class AccountRecordIn(BaseModel):
    """An account as the migration's sync states it (ADR 0031)."""

    model_config = ConfigDict(extra="forbid")
    email: Email
    name: Name
    password_hash: Annotated[str, Field(min_length=1, max_length=512, description=(
        "an argon2id PHC string, of any cost: $argon2id$v=19$m=..,t=..,p=..$salt$hash"))]


class AccountRecordOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    password_hash: str = Field(description="only ever shown to the migration's sync")
    roles: list[str]
    version: int
    addresses: list[AddressOut]


class AccountIdsOut(BaseModel):
    ids: list[uuid.UUID]


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


def account_record_json(user: User, addresses: Any) -> dict[str, Any]:
    return {**me_json(user), "password_hash": user.password_hash, "version": user.version,
            "addresses": [address_json(a) for a in addresses]}


class KeyRotatedOut(BaseModel):
    kid: str = Field(description="the key id new tokens carry in their header")


class JwksOut(BaseModel):
    keys: list[dict[str, Any]]


class ClientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
                                    examples=["storefront"])]
    redirect_uris: Annotated[list[Annotated[str, Field(min_length=1, max_length=2000)]],
                             Field(min_length=1, max_length=10, description=(
                                 "exact URIs the client may be sent back to: https, or http "
                                 "to localhost, 127.0.0.1 or [::1]; no fragment"))]
    confidential: bool = Field(True, description="a server that keeps a secret (true), or "
                                                 "a browser or mobile app that cannot (false)")


class ClientOut(BaseModel):
    client_id: str
    redirect_uris: list[str]
    confidential: bool


class ClientCreatedOut(ClientOut):
    client_secret: str | None = Field(
        description="only here, only once: identity keeps its digest (null: public client)")


class ClientListOut(BaseModel):
    items: list[ClientOut]
