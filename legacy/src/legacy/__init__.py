"""The legacy shop: one process, one database, the monolith mercato's migration starts from."""
