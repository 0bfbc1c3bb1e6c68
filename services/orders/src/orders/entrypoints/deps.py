"""The orders service's FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from chassis.deps import Ctx, CurrentPrincipal, Uow
from chassis.saga import SagaEngine
from fastapi import Depends

from orders.adapters.upstream import Upstreams
from orders.service_layer.admission import Admission


async def get_upstreams(ctx: Ctx) -> Upstreams:
    upstreams: Upstreams = ctx.state["upstreams"]
    return upstreams


async def get_engine(ctx: Ctx) -> SagaEngine:
    engine: SagaEngine = ctx.state["saga_engine"]
    return engine


async def get_card_key(ctx: Ctx) -> bytes | None:
    key: bytes | None = ctx.state.get("card_fingerprint_key")
    return key


async def get_admission(ctx: Ctx) -> Admission:
    admission: Admission = ctx.state["admission"]
    return admission


UpstreamsDep = Annotated[Upstreams, Depends(get_upstreams)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
CardKey = Annotated[bytes | None, Depends(get_card_key)]
Engine = Annotated[SagaEngine, Depends(get_engine)]

__all__ = ["AdmissionDep", "CardKey", "CurrentPrincipal", "Engine", "Uow", "UpstreamsDep"]
