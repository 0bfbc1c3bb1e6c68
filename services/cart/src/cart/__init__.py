"""cart: a cart per customer, priced from the catalog, checked out into an order."""
