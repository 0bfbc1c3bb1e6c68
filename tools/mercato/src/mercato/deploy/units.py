"""The deploy facts of every service: what it calls, what it consumes, what it needs.

One entry per service in ``mercato.runtime.services.SERVICES``; a service without an entry
stops ``mercato deploy render`` (and the deploy tests), so a new service cannot ship without
its manifests. Everything else about a service's manifests is the same for all of them and
lives in ``mercato.deploy.k8s``.

Resource figures come from a running platform, idle and under ``mercato bench orders
--rate 8`` (``mercato status --json`` for memory, the bench's CPU per order): requests are
what a service uses at about 10 orders/s, memory limits leave room for bursts (docs/deploy.md
has the measurements).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mercato.runtime.services import SERVICES, api_path

HTTP_PORT = 8000
NAMESPACE = "mercato"
DATABASE_CLUSTER = "mercato-db"
NATS_SERVICE = "nats"
# KEDA's operator reads JetStream's monitoring endpoint from its own namespace, so it needs
# the full name; the chart's headless Service lets it find the node leading each consumer.
NATS_MONITORING = f"nats-headless.{NAMESPACE}.svc.cluster.local:8222"
NATS_ACCOUNT = "$G"  # the global account: NATS without accounts configured


def k8s_name(service: str) -> str:
    """Kubernetes names are DNS labels: ``order_history`` is ``order-history`` there."""
    return service.replace("_", "-")


def env_prefix(service: str) -> str:
    return service.upper() + "_"


@dataclass(frozen=True)
class Consumer:
    """A durable JetStream consumer the service reads (KEDA scales the service on its lag)."""

    stream: str
    name: str


@dataclass(frozen=True)
class External:
    """A system outside the cluster the service calls (in dev, a simulator stands in)."""

    name: str
    port: int
    simulator: str  # the dev overlay's stand-in (a Deployment of the same name)


@dataclass(frozen=True)
class Unit:
    service: str
    calls: tuple[str, ...] = ()        # services it calls over HTTP (identity's JWKS: all do)
    consumers: tuple[Consumer, ...] = ()
    config: dict[str, str] = field(default_factory=dict)  # without the prefix
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)  # VAR -> (secret, key)
    external: tuple[External, ...] = ()
    public: bool = True                # routed by the edge
    sagas: tuple[str, ...] = ()        # sagas it orchestrates (its dashboard shows them)
    cpu_request: str = "100m"
    memory_request: str = "160Mi"
    memory_limit: str = "384Mi"

    @property
    def name(self) -> str:
        return k8s_name(self.service)

    @property
    def prefix(self) -> str:
        return env_prefix(self.service)

    @property
    def message_driven(self) -> bool:
        return bool(self.consumers)

    @property
    def api_path(self) -> str:
        return api_path(self.service)


def _url(service: str) -> str:
    return f"http://{k8s_name(service)}:{HTTP_PORT}"


PSP = External("payment provider", 8790, simulator="payments-provider")
SMTP = External("mail server", 8025, simulator="mailsink")

UNITS: dict[str, Unit] = {u.service: u for u in [
    # argon2id: every login or registration hashes with 64 MiB, up to 4 at once (372 MiB
    # measured while 20 customers registered and logged in).
    Unit("identity", secrets={"SIGNING_KEY_SECRET": ("identity-signing-key", "secret")},
         cpu_request="150m", memory_request="384Mi", memory_limit="768Mi"),
    Unit("catalog"),
    Unit("inventory", cpu_request="150m",
         consumers=(Consumer("INVENTORY_COMMANDS", "inventory-commands"),
                    Consumer("CATALOG_EVENTS", "inventory-catalog-events"),
                    Consumer("ORDERS_EVENTS", "inventory-orders-events"))),
    Unit("payments", cpu_request="150m",
         consumers=(Consumer("PAYMENTS_COMMANDS", "payments-commands"),),
         external=(PSP,), config={"PROVIDER_URL": f"http://payments-provider:{PSP.port}"}),
    Unit("shipping", consumers=(Consumer("SHIPPING_COMMANDS", "shipping-commands"),
                                Consumer("ORDERS_EVENTS", "shipping-orders-events"))),
    # payments: a card_number order's card is exchanged for a payment method (ADR 0013).
    Unit("orders", calls=("identity", "catalog", "payments"), cpu_request="250m",
         sagas=("order.v3", "order.v2", "order"),  # the one it starts, the ones before ADR 0053
         secrets={"CARD_FINGERPRINT_SECRET": ("orders-card-fingerprint", "secret")},
         consumers=(Consumer("INVENTORY_EVENTS", "orders-saga-replies-inventory"),
                    Consumer("PAYMENTS_EVENTS", "orders-saga-replies-payments"),
                    Consumer("SHIPPING_EVENTS", "orders-saga-replies-shipping"),
                    Consumer("CATALOG_EVENTS", "orders-catalog-events"),
                    Consumer("IDENTITY_EVENTS", "orders-identity-events")),
         config={"IDENTITY_URL": _url("identity"), "CATALOG_URL": _url("catalog"),
                 "PAYMENTS_URL": _url("payments")}),
    Unit("cart", calls=("catalog", "orders"),
         consumers=(Consumer("CATALOG_EVENTS", "cart-catalog-events"),),
         config={"CATALOG_URL": _url("catalog"), "ORDERS_URL": _url("orders")}),
    Unit("notifications", external=(SMTP,), cpu_request="150m",
         consumers=(Consumer("ORDERS_EVENTS", "notifications-orders"),
                    Consumer("SHIPPING_EVENTS", "notifications-shipping")),
         config={"SMTP_HOST": "mailsink", "SMTP_PORT": str(SMTP.port)}),
    Unit("order_history", cpu_request="150m",
         consumers=(Consumer("ORDERS_EVENTS", "order_history-orders"),
                    Consumer("PAYMENTS_EVENTS", "order_history-payments"),
                    Consumer("SHIPPING_EVENTS", "order_history-shipping"))),
    # The web shop's backend-for-frontend: it composes pages from the services it calls.
    Unit("storefront", calls=("identity", "catalog", "inventory", "cart", "orders", "payments",
                              "shipping", "order_history"),
         secrets={"SESSION_SECRET": ("storefront-session", "secret"),
                  # its OAuth 2 client secret at identity (registered with the same value)
                  "OAUTH_CLIENT_SECRET": ("storefront-oauth-client", "secret")},
         config={"IDENTITY_URL": _url("identity"), "CATALOG_URL": _url("catalog"),
                 "INVENTORY_URL": _url("inventory"), "CART_URL": _url("cart"),
                 "ORDERS_URL": _url("orders"), "PAYMENTS_URL": _url("payments"),
                 "SHIPPING_URL": _url("shipping"), "HISTORY_URL": _url("order_history")}),
]}


def units() -> list[Unit]:
    """Every service's unit, in the runtime's order; refuses a service without one."""
    missing = [s for s in SERVICES if s not in UNITS]
    if missing:
        raise LookupError(f"no deploy facts for {', '.join(missing)}: add them to "
                          "mercato/deploy/units.py, then run `mercato deploy render`")
    return [UNITS[s] for s in SERVICES]


def callers(service: str) -> list[Unit]:
    """Who calls ``service`` over HTTP inside the cluster (every service calls identity's
    JWKS to check tokens)."""
    return [u for u in units() if service in u.calls or (service == "identity"
                                                         and u.service != "identity")]


def contract_consumers(service: str) -> list[Unit]:
    """Who depends on ``service``'s behaviour besides itself: the readers of its events and
    its HTTP callers. CI runs their tests when ``service`` changes."""
    stream = f"{service.upper()}_EVENTS"
    return [u for u in units() if u.service != service
            and (service in u.calls or any(c.stream == stream for c in u.consumers))]
