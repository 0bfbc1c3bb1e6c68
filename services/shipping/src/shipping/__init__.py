"""shipping: shipments for approved orders, moved along by a simulated carrier."""
