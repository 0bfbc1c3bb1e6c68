"""The mercato console: telemetry receiver, store and web UI of a running platform."""
