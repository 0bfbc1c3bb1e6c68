"""A simulated card payment provider, run as its own process:
``python -m simulators.payment_provider``.

It plays a third party, so it shares nothing with the service but the wire protocol: no
chassis, no contracts, its own SQLite file. See ``app.py`` for the protocol and test cards.
"""
