"""Documentation made from the code, so it cannot drift (``mercato docs render [--check]``)."""
