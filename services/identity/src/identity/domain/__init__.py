"""identity's domain: accounts, addresses and refresh-token families. Plain Python only."""
