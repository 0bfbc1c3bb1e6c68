"""The orders service's FastAPI dependencies, as Annotated aliases, and the wiring they read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeAlias

from chassis.app import ServiceContext
from chassis.deps import CurrentPrincipal, Uow, get_ctx
from chassis.saga import SagaEngine
from fastapi import Depends

from orders.adapters.upstream import Upstreams
from orders.metrics import ReplicaLookups
from orders.service_layer.admission import Admission
from orders.settings import OrdersSettings


@dataclass(frozen=True, slots=True)
class OrdersWiring:
    """What ``bootstrap`` builds for the handlers (ADR 0025)."""

    engine: SagaEngine  # the one the reply consumers and the reconciler drive too
    upstreams: Upstreams  # identity, catalog and payments
    admission: Admission
    replica_lookups: ReplicaLookups
    card_key: bytes | None  # keys a card's hash in an order's fingerprint


OrdersContext: TypeAlias = ServiceContext[OrdersSettings, OrdersWiring]
Context = Annotated[OrdersContext, Depends(get_ctx)]


async def get_upstreams(ctx: Context) -> Upstreams:
    return ctx.wiring.upstreams


async def get_engine(ctx: Context) -> SagaEngine:
    return ctx.wiring.engine


async def get_card_key(ctx: Context) -> bytes | None:
    return ctx.wiring.card_key


async def get_admission(ctx: Context) -> Admission:
    return ctx.wiring.admission


async def get_replica_lookups(ctx: Context) -> ReplicaLookups:
    return ctx.wiring.replica_lookups


UpstreamsDep = Annotated[Upstreams, Depends(get_upstreams)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
ReplicaLookupsDep = Annotated[ReplicaLookups, Depends(get_replica_lookups)]
CardKey = Annotated[bytes | None, Depends(get_card_key)]
Engine = Annotated[SagaEngine, Depends(get_engine)]

__all__ = ["AdmissionDep", "CardKey", "CurrentPrincipal", "Engine", "ReplicaLookupsDep", "Uow",
           "UpstreamsDep"]
