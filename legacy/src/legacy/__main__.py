"""``python -m legacy [serve|migrate|seed|create-admin]`` (default: serve, migrating first)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from legacy.settings import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m legacy", description=__doc__)
    sub = ap.add_subparsers(dest="command")
    sub.add_parser("serve", help="migrate, then serve the shop (the default)")
    sub.add_parser("migrate", help="bring the database schema to the newest version")
    seed = sub.add_parser("seed", help="fill the shop with realistic, deterministic data")
    seed.add_argument("--customers", type=int, default=2000)
    seed.add_argument("--products", type=int, default=1000)
    seed.add_argument("--orders", type=int, default=20000,
                      help="orders spread over the past year")
    seed.add_argument("--seed", type=int, default=42)
    admin = sub.add_parser("create-admin", help="an admin account (password on stdin)")
    admin.add_argument("email")
    admin.add_argument("--name", default="Shop admin")
    args = ap.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"legacy: {exc}", file=sys.stderr)
        return 2
    from legacy.migrate import upgrade_to_head

    if args.command in (None, "serve"):
        upgrade_to_head(settings.database_url)
        import uvicorn

        from legacy.app import create_app

        uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                    log_level="warning", access_log=False)
        return 0
    if args.command == "migrate":
        upgrade_to_head(settings.database_url)
        return 0
    if args.command == "seed":
        from legacy.seed import SeedError, seed_shop

        for name in ("customers", "products", "orders"):
            if not 0 <= getattr(args, name) <= 1_000_000:
                print(f"legacy seed: --{name} must be between 0 and 1000000", file=sys.stderr)
                return 2
        upgrade_to_head(settings.database_url)
        try:
            asyncio.run(seed_shop(settings.database_url, customers=args.customers,
                                  products=args.products, orders=args.orders, seed=args.seed,
                                  say=lambda line: print(line, file=sys.stderr, flush=True)))
        except SeedError as exc:
            print(f"legacy seed: {exc}", file=sys.stderr)
            return 1
        return 0
    password = sys.stdin.readline().rstrip("\n")
    upgrade_to_head(settings.database_url)
    return asyncio.run(_create_admin(settings, args.email, password, args.name))


async def _create_admin(settings: Settings, email: str, password: str, name: str) -> int:
    from sqlalchemy.ext.asyncio import create_async_engine

    from legacy import shop
    from legacy.domain import Problem

    engine = create_async_engine(settings.database_url)
    try:
        customer = await shop.register(engine, settings.passwords(), email, password, name,
                                       is_admin=True)
    except Problem as exc:
        print(f"legacy create-admin: {exc.title}: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(customer.id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
