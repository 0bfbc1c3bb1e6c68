"""mercato identity: accounts, argon2id passwords, RS256 tokens and their JWKS, addresses."""
