"""Test fixtures for every package: ``pytest_plugins = ["mercato.testing.infra"]``."""
