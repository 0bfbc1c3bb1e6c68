"""identity's use cases, written against the ports in ``ports`` (fakes in unit tests)."""
