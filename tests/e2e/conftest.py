"""The e2e tests use the session's platform from tests/conftest.py: `mercato up --detach`
in a temporary home, everything through the real CLI, the real engines and the edge, as a
user would."""
