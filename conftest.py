# legacy/ and simulators/ are top-level folders named like the packages in them: pytest's
# importlib mode names a test legacy/tests/x.py "legacy.tests.x" and would make "legacy" an
# empty namespace package, hiding the real one. Imported first, the real packages win.
import legacy  # noqa: F401
import simulators  # noqa: F401

pytest_plugins = ["mercato.testing.infra"]
