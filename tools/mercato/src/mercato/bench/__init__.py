"""Benchmarks against a running platform (``mercato bench ...``); reports go to bench/reports/."""
