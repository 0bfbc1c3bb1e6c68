from __future__ import annotations

from typing import ClassVar

from chassis.settings import ServiceSettings
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict


class StorefrontSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STOREFRONT_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "storefront"

    # Bare service names are resolved through the registry; tests point these elsewhere.
    identity_url: str = "http://identity"
    catalog_url: str = "http://catalog"
    inventory_url: str = "http://inventory"
    cart_url: str = "http://cart"
    orders_url: str = "http://orders"
    payments_url: str = "http://payments"
    shipping_url: str = "http://shipping"
    history_url: str = "http://order_history"
    # A page waits this long for each service it composes: a slow part is marked missing
    # rather than holding the whole page (pages must answer well under a second).
    upstream_timeout_s: float = Field(default=1.5, gt=0)
    upstream_retries: int = Field(default=1, ge=0)
    # Signing in and up hash the password (argon2id: ~0.3 s alone, seconds on a busy
    # machine): their own, longer bound. Not retried (not idempotent), so this is the wait.
    identity_timeout_s: float = Field(default=10.0, gt=0)
    # Placing an order asks identity and catalog first: a longer bound for that one call.
    orders_timeout_s: float = Field(default=5.0, gt=0)
    # Keys the CSRF tokens (HMAC of the browser's session cookie). Every instance must
    # share it; the runtime makes one per home. Empty in development: a random one per
    # process (forms then do not survive a restart).
    session_secret: SecretStr = SecretStr("")
    # The storefront is this confidential OAuth 2 client of identity (ADR 0022); `mercato up`
    # registers it with the edge's /auth/callback URIs and hands over the secret.
    oauth_client_id: str = "storefront"
    oauth_client_secret: SecretStr = SecretStr("")
    # Sessions end after this long without a request.
    session_idle_s: int = Field(default=7 * 24 * 3600, gt=60)
    # Secure cookies where the edge serves TLS; plain http on a laptop needs False.
    cookie_secure: bool = False
    # The console's base URL for trace links in the back office; empty: no links.
    console_url: str = ""
    page_size: int = Field(default=12, ge=1, le=100)
    # Every page looks its session up, and a checkout holds its row lock (and so a
    # connection) while payments and orders answer: more connections than the chassis'
    # default 10, so slow checkouts cannot starve the pages (and /health/ready) of them.
    db_pool_size: int = 20
    # GraphQL limits: a query nested deeper, or costing more, is refused before it runs.
    graphql_max_depth: int = Field(default=8, ge=2)
    graphql_max_cost: int = Field(default=5000, ge=10)
