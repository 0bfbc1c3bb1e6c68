pytest_plugins = ["mercato.testing.infra"]
