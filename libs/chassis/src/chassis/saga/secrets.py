"""Keeping a saga's secret data (a card number, a payment token) out of what outlives it.

A definition names its secret keys; the engine keeps their values out of the history it
writes, out of the exceptions it lets escape (the consumer logs them and puts them in
dead-letter headers), and out of ``history()``; it drops the keys from the saga's data when
the saga ends. Redaction is by key (the key's value is replaced) and by value (a secret's
value quoted inside some other text, such as an error message, is replaced too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

REDACTED = "<redacted>"
# A shorter value would blot out ordinary text wherever it happens to occur.
_MIN_VALUE_LEN = 6


class SecretLeakPrevented(RuntimeError):
    """An error whose message quoted a secret, re-raised with the secret redacted."""


class Redactor:
    def __init__(self, keys: Iterable[str], data: Mapping[str, Any] | None = None) -> None:
        self.keys = frozenset(keys)
        values = {str(v) for k in self.keys
                  if (v := (data or {}).get(k)) is not None and len(str(v)) >= _MIN_VALUE_LEN}
        # Longest first: a secret that contains another is replaced whole.
        self._values = sorted(values, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def value(self, value: Any) -> Any:
        """``value`` with every secret key's value, and every secret quoted in a string,
        replaced by ``REDACTED`` (dicts and lists are copied, never changed in place)."""
        if not self.keys:
            return value
        if isinstance(value, Mapping):
            return {k: REDACTED if k in self.keys else self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def omit(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` without the secret keys at all (what a saga started with)."""
        return {k: self.value(v) for k, v in data.items() if k not in self.keys}

    @contextlib.contextmanager
    def scrubbing(self) -> Iterator[None]:
        """Let an exception through unchanged unless its message quotes a secret; then raise
        one with the secret redacted instead (the original is not chained: a traceback
        would print its message)."""
        try:
            yield
        except Exception as exc:
            told = str(exc)
            clean = self.text(told)
            if clean == told:
                raise
            raise SecretLeakPrevented(f"{type(exc).__name__}: {clean}") from None
