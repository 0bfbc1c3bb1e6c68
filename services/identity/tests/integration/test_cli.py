"""``python -m identity create-admin``: the documented way to create the first admin."""

from __future__ import annotations

import io
from typing import Any

import pytest
from identity.entrypoints.cli import main
from identity_http import API, PASSWORD, bearer, login

pytestmark = pytest.mark.integration

FAST = {"IDENTITY_ARGON2_TIME_COST": "1", "IDENTITY_ARGON2_MEMORY_COST_KIB": "8",
        "IDENTITY_ARGON2_PARALLELISM": "1"}


@pytest.fixture
def cli(fresh_database: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Any:
    """Runs the command in-process on a database it has to migrate itself."""
    for name, value in {"IDENTITY_DATABASE_URL": fresh_database, **FAST}.items():
        monkeypatch.setenv(name, value)

    def run(*args: str, stdin: str = PASSWORD + "\n") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(["create-admin", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_create_admin_migrates_creates_and_is_idempotent(cli: Any, sql: Any) -> None:
    code, out, err = cli("Root@Example.com", "--name", "Root", "--password-stdin")
    assert (code, err) == (0, "")
    assert out.startswith("created admin root@example.com (id ")
    assert sql("SELECT roles FROM users") == ["admin", "customer"]
    assert sql("SELECT name FROM users") == "Root"
    code, out, _ = cli("root@example.com", "--password-stdin")
    assert code == 0 and "is an admin already; nothing changed" in out
    assert sql("SELECT count(*) FROM users") == 1


def test_create_admin_promotes_an_existing_account_without_touching_its_password(
        cli: Any, client: Any, sql: Any) -> None:
    client.post(f"{API}/register", json={"email": "ann@example.com", "password": PASSWORD,
                                         "name": "Ann"})
    hash_before = sql("SELECT password_hash FROM users")
    code, out, _ = cli("ann@example.com", "--password-stdin", stdin="another password\n")
    assert code == 0 and "granted admin to the existing account ann@example.com" in out
    assert sql("SELECT password_hash FROM users") == hash_before
    token = login(client).json()["access_token"]
    assert client.get(f"{API}/me", headers=bearer(token)).json()["roles"] == \
        ["admin", "customer"]


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("not-an-email", "--password-stdin"), PASSWORD, "name@example.com"),
    (("root@example.com", "--password-stdin"), "short\n", "at least 8 characters"),
    (("root@example.com", "--password-stdin"), "", "no password"),
    (("root@example.com", "--name", "a\tb", "--password-stdin"), PASSWORD, "control"),
])
def test_create_admin_refuses_bad_input_clearly(cli: Any, args: tuple[str, ...], stdin: str,
                                                message: str) -> None:
    code, out, err = cli(*args, stdin=stdin)
    assert code == 2 and out == ""
    assert err.startswith("python -m identity create-admin: error: ") and message in err
    assert "Traceback" not in err


def test_create_admin_without_a_database_says_so(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("IDENTITY_DATABASE_URL", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD))
    assert main(["create-admin", "root@example.com", "--password-stdin"]) == 2
    assert "IDENTITY_DATABASE_URL is not set" in capsys.readouterr().err
    monkeypatch.setenv("IDENTITY_DATABASE_URL",
                       "postgresql+asyncpg://nobody:pw@127.0.0.1:1/nothing")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD))
    assert main(["create-admin", "root@example.com", "--password-stdin"]) == 1
    assert "cannot reach the database" in capsys.readouterr().err


def test_issue_admin_token_signs_a_short_lived_admin_token_in_development_only(
        fresh_database: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], sql: Any) -> None:
    import jwt

    monkeypatch.setenv("IDENTITY_DATABASE_URL", fresh_database)
    assert main(["issue-admin-token", "--ttl-s", "60"]) == 0
    token = capsys.readouterr().out.strip()
    header, claims = jwt.get_unverified_header(token), jwt.decode(
        token, options={"verify_signature": False})
    assert claims["roles"] == ["admin", "customer"] and claims["exp"] - claims["iat"] == 60
    # Signed with the key identity publishes (made on this first use of the database).
    assert header["kid"] in sql("SELECT string_agg(kid, ',') FROM signing_keys").split(",")
    assert main(["issue-admin-token", "--ttl-s", "5"]) == 2
    assert "10 to 900" in capsys.readouterr().err
    monkeypatch.setenv("IDENTITY_ENVIRONMENT", "production")
    monkeypatch.setenv("IDENTITY_SIGNING_KEY_SECRET", "s" * 40)
    assert main(["issue-admin-token"]) == 2
    assert "only in development" in capsys.readouterr().err
