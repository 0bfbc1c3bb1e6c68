"""Input rules for accounts: email syntax and normalisation, password policy, display names."""

from __future__ import annotations

import re
import unicodedata

from identity.domain.errors import (
    InvalidEmail,
    InvalidName,
    InvalidPassword,
    InvalidPasswordHash,
)

PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 128
NAME_MAX_CHARS = 200
EMAIL_MAX_CHARS = 254  # RFC 5321's path limit less the angle brackets

_LOCAL = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
# Bidirectional overrides make a label render differently from what it holds (spoofing).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def normalise_email(raw: str) -> str:
    """Lower-case, trimmed and checked: the one spelling an account is stored and found by.

    The whole address is lower-cased (local part included) so that ``Ann@Shop.test`` and
    ``ann@shop.test`` can never be two accounts; quoted local parts and IP literals are
    refused rather than half-supported.
    """
    email = raw.strip().lower()
    if not email or len(email) > EMAIL_MAX_CHARS:
        raise InvalidEmail("an email address has 3 to 254 characters")
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise InvalidEmail("an email address looks like name@example.com")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        raise InvalidEmail("the part before @ is not a valid mailbox name")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels) \
            or not _TLD.fullmatch(labels[-1]):
        raise InvalidEmail("the part after @ is not a valid domain name")
    return email


def normalise_password(raw: str) -> str:
    """NFKC form, so the same password typed on two keyboards hashes the same (NIST 800-63B)."""
    return unicodedata.normalize("NFKC", raw)


def check_new_password(raw: str) -> str:
    """The policy for a new password; returns the form to hash.

    Length only, as NIST SP 800-63B advises: composition rules push people to predictable
    passwords, and any printable character (spaces too) is allowed.
    """
    password = normalise_password(raw)
    if len(password) < PASSWORD_MIN_CHARS:
        raise InvalidPassword(f"a password has at least {PASSWORD_MIN_CHARS} characters")
    if len(password) > PASSWORD_MAX_CHARS:
        raise InvalidPassword(f"a password has at most {PASSWORD_MAX_CHARS} characters")
    if not password.strip():
        raise InvalidPassword("a password cannot be only spaces")
    if any(unicodedata.category(ch) == "Cc" for ch in password):
        raise InvalidPassword("a password cannot hold control characters")
    return password


def clean_text(raw: str, *, field: str, max_chars: int, required: bool = True,
               error: type[Exception] = InvalidName) -> str:
    """Trimmed single-line text without control characters: they break logs, mail headers
    and the shipping labels printed from it."""
    text = raw.strip()
    if required and not text:
        raise error(f"{field} cannot be empty")
    if len(text) > max_chars:
        raise error(f"{field} has at most {max_chars} characters")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS for ch in text):
        raise error(f"{field} cannot hold control characters or line breaks")
    return text


def check_name(raw: str) -> str:
    return clean_text(raw, field="name", max_chars=NAME_MAX_CHARS)


# An argon2id PHC string of any cost (argon2-cffi verifies whatever parameters it names):
# $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>, unpadded base64.
_ARGON2ID = re.compile(r"\$argon2id\$v=19\$m=[1-9][0-9]{0,9},t=[1-9][0-9]{0,9},"
                       r"p=[1-9][0-9]{0,5}\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{16,}")


def check_password_hash(raw: str) -> str:
    """A hash made elsewhere (the monolith's, brought by the migration's sync): argon2id
    only, so every account stays verifiable by the one hasher identity has."""
    if len(raw) > 512 or not _ARGON2ID.fullmatch(raw):
        raise InvalidPasswordHash("password_hash is an argon2id PHC string "
                                  "($argon2id$v=19$m=..,t=..,p=..$salt$hash)")
    return raw
