"""The capabilities that move off the monolith, one table: which legacy paths each covers,
which services paths answer it once moved, and whether the anti-corruption layer can
already translate its legacy paths.

Order is the runbook's (docs/migration.md): the least coupled first, money last.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Path:
    """A legacy path the edge matches: ``prefix`` (the path and what is below it) or
    ``exact``."""

    path: str
    prefix: bool = True

    @property
    def label(self) -> str:
        return f"{self.path}/*" if self.prefix else self.path


@dataclass(frozen=True, slots=True)
class Capability:
    name: str
    title: str
    legacy: tuple[Path, ...]
    services: tuple[str, ...]  # the services paths that answer it (new clients call them)
    # Only reads are shadowed: a shadow write would charge, reserve or create twice.
    shadow_reads: bool = True
    # The ACL can answer the legacy paths from the services (``translate.py``); a
    # capability without it cannot be shifted, only shadowed once it has one.
    translated: bool = False


CAPABILITIES: tuple[Capability, ...] = (
    Capability("catalog", "catalog reads",
               legacy=(Path("/shop/products"), Path("/shop/categories")),
               services=("/api/catalog/products", "/api/catalog/categories"),
               translated=True),
    Capability("identity", "identity (sign-up, sign-in, profile, addresses)",
               legacy=(Path("/shop/register", prefix=False), Path("/shop/login", prefix=False),
                       Path("/shop/logout", prefix=False), Path("/shop/me"),
                       Path("/shop/addresses")),
               # Sessions of either side are honoured by the other (ADR 0032).
               services=("/api/identity",), translated=True),
    # Cart, checkout and history: ADR 0035 (shopping.py). Not shadowed: the ACL's cart read
    # moves the monolith's cart (a write), and its history is both sides' orders, which
    # the monolith's alone would never match once checkout is split.
    Capability("cart", "cart", legacy=(Path("/shop/cart"),), services=("/api/cart",),
               shadow_reads=False, translated=True),
    Capability("history", "order history", legacy=(Path("/shop/orders"),),
               services=("/api/history/orders",), shadow_reads=False, translated=True),
    Capability("checkout", "checkout (orders and payments)",
               legacy=(Path("/shop/checkout", prefix=False),),
               services=("/api/cart/checkout", "/api/orders"), shadow_reads=False,
               translated=True),
)

BY_NAME = {c.name: c for c in CAPABILITIES}
NAMES = tuple(BY_NAME)
# Everything else under /shop (the back office, health of the shop's own pages) stays on
# the monolith until the capability owning it is defined here.
LEGACY_ROOT = "/shop"


class UnknownCapability(ValueError):
    pass


def capability(name: str) -> Capability:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownCapability(f"no capability {name!r}; capabilities are "
                                + ", ".join(NAMES)) from None


def of_path(path: str) -> Capability | None:
    """The capability a legacy request path belongs to (query string excluded)."""
    for cap in CAPABILITIES:
        for p in cap.legacy:
            if path == p.path or (p.prefix and path.startswith(p.path + "/")):
                return cap
    return None
