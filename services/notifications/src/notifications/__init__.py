"""notifications: emails about orders and shipments, sent through SMTP from a durable queue."""
