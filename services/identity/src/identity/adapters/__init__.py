"""identity's adapters: PostgreSQL tables and repositories, argon2id, signing keys, JWTs."""
