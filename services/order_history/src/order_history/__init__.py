"""order_history: the read model of every order across orders, payments and shipping."""
