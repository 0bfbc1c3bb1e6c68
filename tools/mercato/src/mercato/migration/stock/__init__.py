"""The stock split (ADR 0034): while checkout is split between the monolith and the
services, each side owns a disjoint part of every product's units and sells only those;
units move between them only by transfers, each applied exactly once, and a rebalancer
moves free units toward where checkouts happen (the checkout share).

``split``: the arithmetic (pure). ``transfers``: the transfer log and its two steps.
``rebalancer``: a pass over the products. ``check``: conservation. ``process``: ``python -m
mercato.migration.stock``, supervised beside the sync under ``mercato up --with legacy``.
"""
