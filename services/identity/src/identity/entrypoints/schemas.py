"""identity's public JSON shapes (the API contract in DESIGN.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from identity.domain.errors import IdentityError
from identity.domain.model import Address, User
from identity.domain.policy import check_name, check_new_password, normalise_email


def _domain_rule(rule: Any) -> AfterValidator:
    # Runs the domain's own check so the API and the CLI refuse exactly the same input;
    # a ValueError becomes a field-located 422 problem.
    def check(value: str) -> str:
        try:
            return str(rule(value))
        except IdentityError as exc:
            raise ValueError(str(exc)) from None

    return AfterValidator(check)


Email = Annotated[str, Field(max_length=320, examples=["ann@example.com"]),
                  _domain_rule(normalise_email)]
NewPassword = Annotated[str, Field(min_length=8, max_length=128), _domain_rule(check_new_password)]
Name = Annotated[str, Field(min_length=1, max_length=200), _domain_rule(check_name)]
Line = Annotated[str, Field(min_length=1, max_length=200)]


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


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Line = Field(description="who receives the parcel")
    line1: Line
    line2: Annotated[str, Field(max_length=200)] | None = None
    city: Annotated[str, Field(min_length=1, max_length=100)]
    postal_code: Annotated[str, Field(min_length=1, max_length=20)]
    country: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$",
                                  description="ISO 3166-1 alpha-2, e.g. KR")]
    phone: Annotated[str, Field(max_length=32)] | None = None


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


class KeyRotatedOut(BaseModel):
    kid: str = Field(description="the key id new tokens carry in their header")


class JwksOut(BaseModel):
    keys: list[dict[str, Any]]
