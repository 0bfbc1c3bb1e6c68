"""``mercato chaos``: fault scenarios against a running platform under order load, judged by
the orders' fate, what clients saw and ``mercato check`` (see docs/operations.md)."""
