"""The sticky bucket: each customer gets a number 0-99, the same every time, and a
capability shifted to N % serves the customers whose bucket is below N from the services.

A customer therefore never flips between the two sides while a share holds still, and a
raised share only adds customers (those already moved stay moved). The edge cannot hash,
so whoever knows the customer computes the bucket and sends it in the ``mercato-bucket``
header (ADR 0028); the edge only compares numbers.
"""

from __future__ import annotations

import hashlib

HEADER = "mercato-bucket"
BUCKETS = 100


def bucket_of(customer_key: str) -> int:
    """The customer's bucket: a stable hash of a stable key (the customer's e-mail in lower
    case, or their account id), never of a session (which changes at each sign-in)."""
    key = customer_key.strip().lower()
    if not key:
        raise ValueError("a bucket needs a customer key")
    digest = hashlib.sha256(key.encode()).digest()
    # 8 bytes modulo 100: the bias is below 1e-17, unlike one byte modulo 100.
    return int.from_bytes(digest[:8], "big") % BUCKETS


def on_services(bucket: int, percent: int) -> bool:
    """Does a customer in ``bucket`` go to the services when the share is ``percent``?"""
    return bucket < percent
