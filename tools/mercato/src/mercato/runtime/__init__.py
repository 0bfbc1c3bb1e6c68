"""The local runtime: embedded PostgreSQL and NATS, the supervisor, and the home layout."""
