"""Reliable messaging: envelope, transactional outbox and relay, idempotent inbox consumers,
dead letters, and an in-memory broker with the same interfaces for unit tests."""
