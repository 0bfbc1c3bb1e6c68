"""mercato payments: payment intents, their ledger, and a simulated payment provider."""
