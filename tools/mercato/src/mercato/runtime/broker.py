"""The broker's credentials in a home: one NATS user per service and per tool, and the
registry signing keys.

Every identity is an NKey user (ed25519): ``secrets/nats-<identity>.json`` (0600) keeps its
seed, and ``nats.conf`` holds only the public key with the identity's permissions
(``chassis.broker_permissions``). Anonymous connections are refused. The identities:

- each service (instances of one service share it), with what its Messaging declares;
- ``mercato-runtime``: the supervisor, which declares the registry bucket and the
  dead-letter stream before any service starts;
- ``mercato-gateway``: the control plane, which reads and watches the registry;
- ``mercato-cli``: the operator's tools (``mercato dlq``, ``bench``, the e2e tests), all
  subjects: whoever can read the home's secrets owns the platform anyway.

``SERVICE_BROKER_NEEDS`` is what each service's Messaging declaration amounts to on the
broker. The runtime does not import the services (it would load all of them into the
supervisor); a test builds every service's declaration and checks it against this table,
so a service that adds a consumer or a command cannot silently lack the permission.

Registry keys: ``secrets/registry-<service>.json`` keeps the service's ed25519 key that
signs its registry entries; every reader is given all services' public keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import nkeys
from chassis.broker_permissions import (
    BrokerNeeds,
    BrokerPermissions,
    gateway_permissions,
    inbox_prefix,
    runtime_permissions,
    service_permissions,
)
from chassis.registry_keys import new_key_pair, public_key_of

from mercato.runtime.paths import Home

RUNTIME = "mercato-runtime"
GATEWAY = "mercato-gateway"
CLI = "mercato-cli"
TOOLS = (RUNTIME, GATEWAY, CLI)

# The commands the order sagas and cancellations build (orders.service_layer.saga's
# COMMANDS_SENT), each its own subject: no wildcard over another service's commands (ADR 0056).
_ORDERS_COMMANDS = tuple(
    f"{owner}.commands.{name}" for owner, names in (
        ("inventory", ("release_stock", "reserve_stock", "restock_reservation")),
        ("payments", ("authorize_payment", "capture_payment", "charge_payment",
                      "refund_payment", "void_payment")),
        ("shipping", ("cancel_shipment", "create_shipment")))
    for name in names)

SERVICE_BROKER_NEEDS: dict[str, BrokerNeeds] = {
    "identity": BrokerNeeds(streams=("IDENTITY_EVENTS",), publishes=("identity.events.>",)),
    "catalog": BrokerNeeds(streams=("CATALOG_EVENTS",), publishes=("catalog.events.>",)),
    "inventory": BrokerNeeds(
        streams=("INVENTORY_COMMANDS", "INVENTORY_EVENTS"), publishes=("inventory.events.>",),
        consumers=(("CATALOG_EVENTS", "inventory-catalog-events"),
                   ("INVENTORY_COMMANDS", "inventory-commands"),
                   # The approval commits the reservation (ADR 0054).
                   ("ORDERS_EVENTS", "inventory-orders-events"))),
    "payments": BrokerNeeds(
        streams=("PAYMENTS_COMMANDS", "PAYMENTS_EVENTS"),
        # The order saga's charge carries its shipment's command (ADR 0053).
        publishes=("payments.events.>", "shipping.commands.create_shipment"),
        consumers=(("PAYMENTS_COMMANDS", "payments-commands"),)),
    "shipping": BrokerNeeds(
        streams=("SHIPPING_COMMANDS", "SHIPPING_EVENTS"), publishes=("shipping.events.>",),
        # The approval releases the shipment (ADR 0054).
        consumers=(("ORDERS_EVENTS", "shipping-orders-events"),
                   ("SHIPPING_COMMANDS", "shipping-commands"))),
    "orders": BrokerNeeds(
        streams=("ORDERS_EVENTS",), publishes=tuple(sorted(("orders.events.>", *_ORDERS_COMMANDS))),
        consumers=(("CATALOG_EVENTS", "orders-catalog-events"),
                   ("IDENTITY_EVENTS", "orders-identity-events"),
                   ("INVENTORY_EVENTS", "orders-saga-replies-inventory"),
                   ("PAYMENTS_EVENTS", "orders-saga-replies-payments"),
                   ("SHIPPING_EVENTS", "orders-saga-replies-shipping"))),
    "cart": BrokerNeeds(consumers=(("CATALOG_EVENTS", "cart-catalog-events"),)),
    "notifications": BrokerNeeds(consumers=(("ORDERS_EVENTS", "notifications-orders"),
                                            ("SHIPPING_EVENTS", "notifications-shipping"))),
    "order_history": BrokerNeeds(consumers=(("ORDERS_EVENTS", "order_history-orders"),
                                            ("PAYMENTS_EVENTS", "order_history-payments"),
                                            ("SHIPPING_EVENTS", "order_history-shipping"))),
    # The storefront neither publishes nor consumes: the registry is all it uses.
    "storefront": BrokerNeeds(),
}


@dataclass(frozen=True)
class NatsUser:
    name: str
    seed: str
    public_key: str


def nats_user(home: Home, name: str) -> NatsUser:
    """The identity's NKey, made on first use and kept in the home's secrets."""
    stored = home.read_secret(f"nats-{name}")
    seed = str(stored.get("seed", "")) if stored else ""
    try:
        public = nkeys.from_seed(bytearray(seed.encode())).public_key.decode() if seed else ""
    except Exception:  # unreadable: make a new one, the server config is rewritten anyway
        public = ""
    if not public:
        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
        public = nkeys.from_seed(bytearray(seed.encode())).public_key.decode()
        home.write_secret(f"nats-{name}", {"identity": name, "seed": seed,
                                           "public_key": public})
    return NatsUser(name=name, seed=seed, public_key=public)


def permissions_of(name: str) -> BrokerPermissions:
    if name == RUNTIME:
        return runtime_permissions(name)
    if name == GATEWAY:
        return gateway_permissions(name)
    if name == CLI:
        return BrokerPermissions(publish=(">",), subscribe=(">",))
    # A service the table does not know (a test's stand-in) gets the registry and no more.
    return service_permissions(name, SERVICE_BROKER_NEEDS.get(name, BrokerNeeds()))


def authorization(home: Home, services: list[str]) -> dict[str, Any]:
    """nats.conf's ``authorization`` block: every identity with its permissions."""
    users = [{"nkey": nats_user(home, name).public_key,
              "permissions": permissions_of(name).as_config()}
             for name in [*TOOLS, *services]]
    return {"users": users}


def connect_options(home: Home, name: str = CLI) -> dict[str, Any]:
    """``nats.connect`` keyword arguments for a tool of this home (the CLI by default)."""
    return {"nkeys_seed_str": nats_user(home, name).seed, "inbox_prefix": inbox_prefix(name)}


def registry_private_key(home: Home, service: str) -> str:
    stored = home.read_secret(f"registry-{service}")
    private = str(stored.get("private_key", "")) if stored else ""
    try:
        public_key_of(private)
    except ValueError:
        private = ""
    if not private:
        private, public = new_key_pair()
        home.write_secret(f"registry-{service}", {"service": service, "private_key": private,
                                                  "public_key": public})
    return private


def trusted_registry_keys(home: Home, services: list[str]) -> dict[str, str]:
    return {s: public_key_of(registry_private_key(home, s)) for s in services}


def service_broker_env(home: Home, service: str, services: list[str]) -> dict[str, str]:
    """The service's NATS credentials and registry keys, as its environment."""
    p = service.upper() + "_"
    return {f"{p}NATS_NKEY_SEED": nats_user(home, service).seed,
            f"{p}REGISTRY_SIGNING_KEY": registry_private_key(home, service),
            f"{p}REGISTRY_TRUSTED_KEYS": json.dumps(trusted_registry_keys(home, services),
                                                    sort_keys=True)}
