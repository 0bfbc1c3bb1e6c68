"""``python -m identity``: serve (the default), create the first admin, register clients.

``python -m identity create-admin EMAIL [--name NAME] --password-stdin`` migrates the
database, then creates an account with the roles customer and admin, or grants admin to the
existing account with that email. ``mercato admin create-admin`` runs this command.

``python -m identity register-client CLIENT_ID --redirect-uri URI... (--secret-stdin |
--public)`` migrates the database, then registers an OAuth 2 client, or sets an existing
one's redirect URIs and secret to these. ``mercato up`` runs it for the storefront.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence

from chassis.clock import utc_now
from chassis.db import Database
from chassis.errors import ProblemError
from chassis.logging import configure_logging
from chassis.migrations import upgrade_to_head
from chassis.serve import run_service
from pydantic import ValidationError

from identity.adapters.repository import SqlIdentityUnitOfWork
from identity.app import MIGRATIONS_DIR, build_accounts, build_key_ring, create_app
from identity.domain.errors import InvalidEmail
from identity.domain.model import User
from identity.domain.oauth import OAuthClient, OAuthClientError, check_client_secret
from identity.domain.policy import normalise_email
from identity.service_layer.handlers import AdminOutcome
from identity.service_layer.oauth import ClientOutcome, Clients
from identity.settings import IdentitySettings

PROG = "python -m identity"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="mercato identity service")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="migrate the database, then serve HTTP (the default)")
    admin = commands.add_parser(
        "create-admin", help="create an admin account, or make an existing account admin",
        description="Creates an account with the roles customer and admin, or grants admin "
                    "to the existing account with that email (its password is then left as "
                    "it is). Needs IDENTITY_DATABASE_URL; runs the migrations first.")
    admin.add_argument("email")
    admin.add_argument("--name", help="display name (default: the part of EMAIL before @)")
    admin.add_argument("--password-stdin", action="store_true", required=True,
                       help="read the password from standard input (one line), so it never "
                            "shows in the process list or the shell history")
    client = commands.add_parser(
        "register-client", help="register an OAuth 2 client, or update its registration",
        description="Registers a client of the authorization code flow (with PKCE), or sets "
                    "an existing one's redirect URIs and secret to these. Needs "
                    "IDENTITY_DATABASE_URL; runs the migrations first.")
    client.add_argument("client_id")
    client.add_argument("--redirect-uri", action="append", required=True, dest="redirect_uris",
                        metavar="URI", help="an exact redirect URI (repeat for more)")
    kind = client.add_mutually_exclusive_group(required=True)
    kind.add_argument("--secret-stdin", action="store_true",
                      help="a confidential client: read its secret (32+ random characters) "
                           "from standard input, so it never shows in the process list")
    kind.add_argument("--public", action="store_true",
                      help="a public client (no secret; PKCE alone binds its codes)")
    token = commands.add_parser(
        "issue-admin-token", help="print a short-lived admin access token (development)",
        description="Signs an access token with the roles admin and customer for the "
                    "subject 'mercato-runtime' (no account, no password, no refresh token) "
                    "with identity's active signing key, for the runtime's own setup calls "
                    "on a development platform. Refused outside development. Needs "
                    "IDENTITY_DATABASE_URL (and IDENTITY_SIGNING_KEY_SECRET when the keys "
                    "are encrypted).")
    token.add_argument("--ttl-s", type=int, default=120, metavar="SECONDS",
                       help="lifetime, 10 to 900 seconds (default 120)")
    return parser


def _fail(message: str, code: int, command: str = "create-admin") -> int:
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)
    return code


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\r\n")


async def _create_admin(settings: IdentitySettings, email: str, name: str | None,
                        password: str) -> tuple[User, AdminOutcome]:
    db = Database(settings.database_url, pool_size=1, application_name=f"{settings.instance}-cli")
    try:
        return await build_accounts(settings).create_admin(
            SqlIdentityUnitOfWork(db.unit_of_work()), email=email, password=password, name=name)
    finally:
        await db.dispose()


def create_admin(email: str, name: str | None) -> int:
    try:
        email = normalise_email(email)
    except InvalidEmail as exc:
        return _fail(str(exc), 2)
    try:
        settings = IdentitySettings()
    except ValidationError as exc:
        return _fail(f"bad IDENTITY_* settings: {exc.errors()[0]['msg']}", 2)
    if not settings.database_url:
        return _fail("IDENTITY_DATABASE_URL is not set", 2)
    password = _read_password()
    if not password:
        return _fail("no password on standard input", 2)
    configure_logging(settings.service_name, settings.instance, "warning")
    try:
        upgrade_to_head(MIGRATIONS_DIR, settings.database_url)
        user, outcome = asyncio.run(_create_admin(settings, email, name, password))
    except ProblemError as exc:
        return _fail(exc.detail or exc.title, 2 if exc.status == 422 else 1)
    except (OSError, ConnectionError) as exc:
        return _fail(f"cannot reach the database: {exc}", 1)
    except Exception as exc:  # sqlalchemy/asyncpg errors: say what, without a traceback
        return _fail(f"{exc.__class__.__name__}: {exc}".splitlines()[0], 1)
    if outcome is AdminOutcome.CREATED:
        print(f"created admin {user.email} (id {user.id})")
    elif outcome is AdminOutcome.PROMOTED:
        print(f"granted admin to the existing account {user.email} (id {user.id}); "
              "its password is unchanged")
    else:
        print(f"{user.email} (id {user.id}) is an admin already; nothing changed")
    return 0


async def _register_client(settings: IdentitySettings, client_id: str,
                           redirect_uris: list[str], secret: str | None) -> ClientOutcome:
    db = Database(settings.database_url, pool_size=1, application_name=f"{settings.instance}-cli")
    try:
        _, outcome = await Clients().register(
            SqlIdentityUnitOfWork(db.unit_of_work()), client_id=client_id,
            redirect_uris=redirect_uris, secret=secret)
        return outcome
    finally:
        await db.dispose()


def register_client(client_id: str, redirect_uris: list[str], public: bool) -> int:
    def fail(message: str, code: int) -> int:
        return _fail(message, code, "register-client")

    try:
        OAuthClient.register(client_id=client_id, redirect_uris=redirect_uris,
                             secret=None, now=utc_now())
    except OAuthClientError as exc:
        return fail(str(exc), 2)
    try:
        settings = IdentitySettings()
    except ValidationError as exc:
        return fail(f"bad IDENTITY_* settings: {exc.errors()[0]['msg']}", 2)
    if not settings.database_url:
        return fail("IDENTITY_DATABASE_URL is not set", 2)
    secret = None if public else sys.stdin.readline().rstrip("\r\n")
    if secret is not None:
        try:
            check_client_secret(secret)
        except OAuthClientError as exc:
            return fail(f"the secret on standard input: {exc}", 2)
    configure_logging(settings.service_name, settings.instance, "warning")
    try:
        upgrade_to_head(MIGRATIONS_DIR, settings.database_url)
        outcome = asyncio.run(_register_client(settings, client_id, redirect_uris, secret))
    except ProblemError as exc:
        return fail(exc.detail or exc.title, 2 if exc.status == 422 else 1)
    except (OSError, ConnectionError) as exc:
        return fail(f"cannot reach the database: {exc}", 1)
    except Exception as exc:  # sqlalchemy/asyncpg errors: say what, without a traceback
        return fail(f"{exc.__class__.__name__}: {exc}".splitlines()[0], 1)
    kind = "public" if public else "confidential"
    print(f"{outcome.value} {kind} client {client_id} "
          f"(redirect URIs: {', '.join(dict.fromkeys(redirect_uris))})")
    return 0


RUNTIME_SUBJECT = "00000000-0000-5000-8000-00000000f00d"


async def _issue_admin_token(settings: IdentitySettings, ttl_s: int) -> str:
    from identity.adapters.tokens import JwtIssuer

    db = Database(settings.database_url, pool_size=1, application_name=f"{settings.instance}-cli")
    try:
        keys = build_key_ring(db, settings)
        await keys.start()
        issuer = JwtIssuer(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                           ttl_s=ttl_s)
        issued = await issuer.issue_for(RUNTIME_SUBJECT, ["admin", "customer"],
                                        "runtime@mercato.invalid", utc_now())
        return issued.token
    finally:
        await db.dispose()


def issue_admin_token(ttl_s: int) -> int:
    command = "issue-admin-token"
    if not 10 <= ttl_s <= 900:
        return _fail("--ttl-s must be from 10 to 900", 2, command)
    try:
        settings = IdentitySettings()
    except ValidationError as exc:
        return _fail(f"bad IDENTITY_* settings: {exc.errors()[0]['msg']}", 2, command)
    if settings.environment != "development":
        # An admin token without an account behind it is a development convenience only.
        return _fail("only in development (IDENTITY_ENVIRONMENT=development)", 2, command)
    if not settings.database_url:
        return _fail("IDENTITY_DATABASE_URL is not set", 2, command)
    configure_logging(settings.service_name, settings.instance, "warning")
    try:
        upgrade_to_head(MIGRATIONS_DIR, settings.database_url)
        print(asyncio.run(_issue_admin_token(settings, ttl_s)))
    except (OSError, ConnectionError) as exc:
        return _fail(f"cannot reach the database: {exc}", 1, command)
    except Exception as exc:  # sqlalchemy/asyncpg/key errors: say what, without a traceback
        return _fail(f"{exc.__class__.__name__}: {exc}".splitlines()[0], 1, command)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "create-admin":
        return create_admin(args.email, args.name)
    if args.command == "register-client":
        return register_client(args.client_id, args.redirect_uris, args.public)
    if args.command == "issue-admin-token":
        return issue_admin_token(args.ttl_s)
    try:
        settings = IdentitySettings()
    except ValidationError as exc:
        print(f"{PROG}: bad IDENTITY_* settings:\n{exc}", file=sys.stderr)
        return 2
    run_service(settings, create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
    return 0
