"""orders: the order lifecycle and the order saga that drives it."""
