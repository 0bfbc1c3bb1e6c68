"""Orchestrated sagas persisted in the orchestrator's database.

Define a saga as steps (command, replies, compensation, deadline); ``SagaEngine.start`` it in
a request's transaction; register ``engine.handlers()`` on an inbox consumer for the replies;
run ``run_reconciler`` beside it; read ``history`` to see what happened.
"""

from chassis.saga.definition import SagaDefinition, Step
from chassis.saga.engine import SagaEngine
from chassis.saga.history import SagaEvent, SagaHistory, history
from chassis.saga.reconciler import run_reconciler
from chassis.saga.store import ConcurrentSagaUpdate, SagaInstance, Status
from chassis.saga.tables import create_saga_tables, saga_tables

__all__ = ["ConcurrentSagaUpdate", "SagaDefinition", "SagaEngine", "SagaEvent", "SagaHistory",
           "SagaInstance", "Status", "Step", "create_saga_tables", "history", "run_reconciler",
           "saga_tables"]
