from __future__ import annotations

from typing import ClassVar

from chassis.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class CatalogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "catalog"

    # Load the demo catalog on the very first start (never again, even if emptied by hand).
    seed_demo: bool = True
    max_page_size: int = 100
    # Browsers and caches may reuse a read this long; ETags make revalidation cheap after.
    read_max_age_s: int = 10
